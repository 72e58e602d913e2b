// What is left of the user's usage budget, said only when it matters.
//
// The server's GET /api/usage/{user_id} gives the budget of the current
// period (docs/api.md): its limits in tokens and/or USD, what was used, and
// when it resets. The page says nothing while under 80 % of every limit; past
// that it says what is left, and once a limit is reached it says plainly
// that the budget is used up and when it comes back.

const LOW = 0.8;

/** "1 Jan, 00:00 UTC": when the budget comes back, for a person. */
export function formatReset(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  const month = d.toLocaleString("en", { month: "short", timeZone: "UTC" });
  const time = d.toISOString().slice(11, 16);
  return `${d.getUTCDate()} ${month}, ${time} UTC`;
}

function left(limit, used, unit) {
  const rest = Math.max(0, limit - used);
  return unit === "usd" ? `$${rest.toFixed(2)}` : `${Math.floor(rest).toLocaleString("en")} tokens`;
}

/**
 * @param {{period: string, limit_tokens: number|null, limit_usd: number|null,
 *          used_tokens: number, used_usd: number, resets_at: number} | null} budget
 * @returns {{level: "low"|"gone", text: string} | null}
 */
export function budgetNote(budget) {
  if (!budget) return null;
  const limits = [
    [budget.limit_tokens, budget.used_tokens, "tokens"],
    [budget.limit_usd, budget.used_usd, "usd"],
  ].filter(([limit]) => limit != null);
  const period = budget.period === "day" ? "today's" : "this month's";
  if (limits.some(([limit, used]) => used >= limit)) {
    return {
      level: "gone",
      text: `You have used all of ${period} budget. It comes back on ${formatReset(budget.resets_at)}.`,
    };
  }
  const low = limits.filter(([limit, used]) => limit > 0 && used / limit >= LOW);
  if (!low.length) return null;
  const rest = low.map(([limit, used, unit]) => left(limit, used, unit)).join(" and ");
  return { level: "low", text: `About ${rest} left of ${period} budget.` };
}

/** Read the caller's budget and show (or hide) the note under the messages. */
export async function refreshBudget(userId) {
  const el = document.getElementById("budget-note");
  if (!el || !userId) return;
  let budget = null;
  try {
    const res = await fetch(`/api/usage/${encodeURIComponent(userId)}`, {
      headers: { Accept: "application/json" },
    });
    if (!res.ok) return;
    budget = (await res.json()).budget;
  } catch {
    return; // the note is a courtesy: a failed read leaves it as it was
  }
  const note = budgetNote(budget);
  el.hidden = !note;
  el.textContent = note ? note.text : "";
  el.dataset.level = note ? note.level : "";
}
