from openai import OpenAI

client = OpenAI(base_url="http://localhost:8000/v1", api_key="secret123")
reply = client.chat.completions.create(model="sluice", messages=[{"role": "user", "content": "Hi"}])
print(reply.choices[0].message.content)
