// A chat page built on the Vercel AI SDK's useChat, with sluice as its back end.
// Served from sluice's origin (through your proxy or a Next.js rewrite of /api/*), it is
// signed in by sluice's identity cookie. To build it, see "Use your own front end" in the
// README.
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, getToolName, isToolUIPart } from "ai";
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

// The chat's id lives in the URL, so a reload comes back to the same chat and resumes an
// answer that is still being written. To sluice the id names one of this user's sessions.
function chatFromUrl() {
  const url = new URL(location.href);
  const id = url.searchParams.get("chat");
  if (id) return { id, isNew: false };
  url.searchParams.set("chat", crypto.randomUUID());
  history.replaceState(null, "", url);
  return { id: url.searchParams.get("chat"), isNew: true };
}

// What sluice remembers of the chat, as UI messages (the answer being written is not
// among them: useChat's resume brings it).
async function savedMessages({ id, isNew }) {
  const me = await (await fetch("/api/me")).json(); // also sets the identity cookie
  if (isNew) return [];
  const saved = await fetch(`/api/sessions/${me.user_id}/${id}`);
  if (!saved.ok) return [];
  const { messages } = await saved.json();
  return messages.map((m, i) => ({
    id: `saved-${i}`,
    role: m.role,
    parts: [{ type: "text", text: m.content }],
  }));
}

const post = (path, body) =>
  fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  });

function Part({ part, streamId }) {
  if (part.type === "text") return <p className="text">{part.text}</p>;
  if (part.type === "reasoning") return <details className="reasoning"><summary>Thinking</summary>{part.text}</details>;
  if (isToolUIPart(part)) {
    const decide = (approve) => post(`/api/streams/${streamId}/tools/${part.toolCallId}`, { approve });
    return (
      <div className="tool" data-tool={getToolName(part)} data-state={part.state}>
        <b>{getToolName(part)}</b>({JSON.stringify(part.input)})
        {part.state === "approval-requested" && (
          <>
            <button onClick={() => decide(true)}>Allow</button>
            <button onClick={() => decide(false)}>Deny</button>
          </>
        )}
        {part.state === "output-available" && <pre className="output">{String(part.output)}</pre>}
        {part.state === "output-error" && <pre className="output error">{part.errorText}</pre>}
      </div>
    );
  }
  return null;
}

function Chat({ id, initialMessages }) {
  const { messages, sendMessage, status, stop, error } = useChat({
    id,
    messages: initialMessages,
    resume: true, // on load, follow the answer being written in this chat, if any
    transport: new DefaultChatTransport({ api: "/api/chat" }),
  });
  const [input, setInput] = useState("");
  const busy = status === "submitted" || status === "streaming";
  const last = messages.at(-1);
  const streamId = last?.role === "assistant" ? last.metadata?.streamId : undefined;
  const stage = last?.parts.findLast((p) => p.type === "data-status")?.data;

  // useChat's stop() only leaves the stream (sluice keeps writing a left answer, for a
  // reload to resume); sluice's cancel stops the model.
  async function stopAnswer() {
    await stop();
    if (streamId) await post(`/api/streams/${streamId}/cancel`);
  }

  return (
    <main data-status={status}>
      {messages.map((m) => (
        <div key={m.id} className={`message ${m.role}`}>
          {m.parts.map((part, i) => <Part key={i} part={part} streamId={m.metadata?.streamId} />)}
          {m.metadata?.model && <small className="model">{m.metadata.provider} · {m.metadata.model}</small>}
        </div>
      ))}
      {busy && stage && <progress value={stage.progress} max="100" title={stage.stage} />}
      {error && <p className="error">{error.message}</p>}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (input.trim()) sendMessage({ text: input });
          setInput("");
        }}
      >
        <input id="input" value={input} onChange={(e) => setInput(e.target.value)} disabled={busy} />
        {busy ? <button type="button" id="stop" onClick={stopAnswer}>Stop</button> : <button id="send">Send</button>}
      </form>
    </main>
  );
}

function App() {
  const [chat] = useState(chatFromUrl);
  const [initialMessages, setInitialMessages] = useState(null);
  useEffect(() => {
    savedMessages(chat).then(setInitialMessages);
  }, [chat]);
  return initialMessages && <Chat id={chat.id} initialMessages={initialMessages} />;
}

createRoot(document.getElementById("root")).render(<App />);
