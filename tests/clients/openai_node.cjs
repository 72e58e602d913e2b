// Drives sluice's /v1 API with OpenAI's own npm package, as a Node program would.
// Usage: node openai_node.cjs <scenario>; env OPENAI_PACKAGE (the installed package's
// directory), BASE_URL (sluice's /v1 URL), TOKEN. Prints one JSON object: what it saw.
"use strict";

const OpenAI = require(process.env.OPENAI_PACKAGE);

const client = (token = process.env.TOKEN) =>
  new OpenAI({ baseURL: process.env.BASE_URL, apiKey: token, maxRetries: 0 });
const messages = [{ role: "user", content: "Hello there" }];

function described(error) {
  return {
    classes: Object.entries(OpenAI)
      .filter(([name, value]) => name.endsWith("Error") && typeof value === "function" && error instanceof value)
      .map(([name]) => name)
      .sort(),
    status: error.status ?? null,
    code: error.code ?? null,
    param: error.param ?? null,
    type: error.type ?? null,
    message: error.message,
    retryAfter: error.headers ? error.headers.get("retry-after") : null,
  };
}

const scenarios = {
  async stream() {
    const { data: stream, response } = await client()
      .chat.completions.create({
        model: "sluice",
        messages,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return {
      streamId: response.headers.get("x-stream-id"),
      ids: [...new Set(chunks.map((c) => c.id))],
      role: chunks[0].choices[0].delta.role,
      text: chunks.map((c) => (c.choices.length ? c.choices[0].delta.content || "" : "")).join(""),
      finishReason: chunks[chunks.length - 2].choices[0].finish_reason,
      usage: chunks[chunks.length - 1].usage,
    };
  },

  // The package's own tool loop: it runs the client's tool when sluice hands back the
  // model's call, and sends the result, until the model answers. Streaming and not.
  async runTools() {
    const seen = {};
    for (const stream of [false, true]) {
      const ran = [];
      const runner = client().chat.completions.runTools({
        model: "openai",
        stream,
        messages: [{ role: "user", content: "Weather in Paris?" }],
        tools: [
          {
            type: "function",
            function: {
              name: "get_weather",
              description: "Today's weather in a city.",
              parameters: {
                type: "object",
                properties: { city: { type: "string" } },
                required: ["city"],
              },
              parse: JSON.parse,
              function: async ({ city }) => {
                ran.push(city);
                return `Sunny in ${city}`;
              },
            },
          },
        ],
      });
      const content = await runner.finalContent();
      seen[stream ? "stream" : "plain"] = {
        ran,
        content,
        roles: runner.messages.map((m) => m.role),
      };
    }
    return seen;
  },

  async complete() {
    const completion = await client().chat.completions.create({ model: "openai", messages });
    return {
      object: completion.object,
      text: completion.choices[0].message.content,
      finishReason: completion.choices[0].finish_reason,
      usage: completion.usage,
    };
  },

  async errors() {
    const attempts = {
      unauthenticated: () => client("tok-nobody").chat.completions.create({ model: "sluice", messages }),
      unknownModel: () => client().chat.completions.create({ model: "gpt-17", messages }),
      tools: () =>
        client().chat.completions.create({
          model: "sluice",
          messages,
          // A client tool named like one of the server's own.
          tools: [{ type: "function", function: { name: "current_time", parameters: {} } }],
        }),
    };
    const seen = {};
    for (const [name, attempt] of Object.entries(attempts)) {
      try {
        await attempt();
        seen[name] = null;
      } catch (error) {
        seen[name] = described(error);
      }
    }
    return seen;
  },

  async interrupted() {
    const stream = await client().chat.completions.create({ model: "openai", messages, stream: true });
    let text = "";
    try {
      for await (const chunk of stream) text += chunk.choices.length ? chunk.choices[0].delta.content || "" : "";
      return { text, error: null };
    } catch (error) {
      return { text, error: described(error) };
    }
  },

  async abort() {
    const stream = await client().chat.completions.create({ model: "openai", messages, stream: true });
    for await (const chunk of stream) {
      if (chunk.choices.length && chunk.choices[0].delta.content) {
        stream.controller.abort(); // the program has what it wanted
        return { first: chunk.choices[0].delta.content };
      }
    }
    return { first: null };
  },
};

scenarios[process.argv[2]]().then(
  (result) => process.stdout.write(JSON.stringify(result) + "\n"),
  (error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
    process.exit(1);
  },
);
