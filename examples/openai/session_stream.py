from openai import OpenAI

client = OpenAI(base_url="http://localhost:8000/v1", api_key="secret123")
response = client.chat.completions.with_raw_response.create(
    model="sluice",
    messages=[{"role": "user", "content": "Find me a restaurant in Tokyo"}],
    stream=True,
    extra_headers={"X-Session-Id": "tokyo-trip"},  # sluice keeps this conversation
)
print("stream id:", response.headers["X-Stream-Id"])
for chunk in response.parse():
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
