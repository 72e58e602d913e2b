curl -N "http://localhost:8000/api/streams/$STREAM_ID" \
  -H 'Authorization: Bearer secret123' -H 'Last-Event-ID: 0'
