// Drives sluice's /api/chat routes with the Vercel AI SDK's own npm package (`ai`), as a
// Node program or a useChat page would: DefaultChatTransport sends and reconnects, and
// readUIMessageStream builds the UI message from the chunks, checking each against the
// SDK's schema on the way.
// Usage: node ai_sdk_node.mjs <scenario> < input.json; env NODE_MODULES (where `ai` is
// installed), BASE_URL (sluice), TOKEN. Prints one JSON object: what it saw.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const ai = await import(pathToFileURL(join(process.env.NODE_MODULES, "ai", "dist", "index.mjs")));
const { DefaultChatTransport, readUIMessageStream } = ai;

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (piece) => (text += piece));
  process.stdin.on("end", () => resolve(text || "{}"));
}));

const transport = (token = process.env.TOKEN, base = process.env.BASE_URL) =>
  new DefaultChatTransport({
    api: `${base}/api/chat`,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });

const userMessage = (text, id = "u1") => ({ id, role: "user", parts: [{ type: "text", text }] });

// Every chunk (copied as it passes: the message builder changes some of them in place),
// and the message readUIMessageStream made of them (its last snapshot).
async function read(stream) {
  const chunks = [];
  const recorded = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(structuredClone(chunk));
        controller.enqueue(chunk);
      },
    }),
  );
  let message = null;
  let error = null;
  const messages = readUIMessageStream({
    stream: recorded,
    terminateOnError: true,
    onError: (e) => (error = e.message),
  });
  try {
    for await (const snapshot of messages) message = structuredClone(snapshot);
  } catch (e) {
    error = e.message;
  }
  return { chunks, message, error };
}

const scenarios = {
  // sendMessages as useChat calls it on submit, and the whole answer read.
  async send() {
    const stream = await transport(input.token).sendMessages({
      chatId: input.chatId,
      messages: input.messages ?? [userMessage(input.text)],
      trigger: input.trigger ?? "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
    return read(stream);
  },

  // Send, read until the first text, then leave (a tab closed mid-answer).
  async leave() {
    const controller = new AbortController();
    const stream = await transport().sendMessages({
      chatId: input.chatId,
      messages: [userMessage(input.text)],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: controller.signal,
    });
    const chunks = [];
    const reader = stream.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      if (value.type === "text-delta") break;
    }
    controller.abort();
    return { chunks };
  },

  // Leave after the first text, then reconnect at once (through another instance when
  // input.resumeUrl names one), as a page reloaded mid-answer does.
  async leaveAndResume() {
    const { chunks: left } = await scenarios.leave();
    const stream = await transport(undefined, input.resumeUrl).reconnectToStream({
      chatId: input.chatId,
    });
    if (stream === null) return { left, resumed: null };
    return { left, resumed: await read(stream) };
  },

  // reconnectToStream as useChat calls it on mount with resume: true.
  async resume() {
    const stream = await transport(input.token).reconnectToStream({ chatId: input.chatId });
    if (stream === null) return { none: true };
    return read(stream);
  },

  // A stream's bytes (the server's encoder output) through the transport's own parser.
  async parse() {
    const bytes = new TextEncoder().encode(input.body);
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
    return read(transport().processResponseStream(body));
  },

  // A refusal: the transport throws with the response's text.
  async refused() {
    try {
      await transport(input.token).sendMessages({
        chatId: input.chatId,
        messages: input.messages,
        trigger: "submit-message",
        messageId: undefined,
        abortSignal: undefined,
      });
      return { thrown: null };
    } catch (e) {
      return { thrown: e.message };
    }
  },
};

const scenario = scenarios[process.argv[2]];
if (!scenario) throw new Error(`unknown scenario ${process.argv[2]}`);
process.stdout.write(JSON.stringify(await scenario()));
