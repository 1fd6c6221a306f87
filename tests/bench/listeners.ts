/**
 * Bench helper: N listeners on 127.0.0.1 in a process of their own, so that
 * accepting does not load the exporter being measured. Prints the ports as a
 * JSON array, then accepts and closes connections until stdin closes.
 */

const count = Number(Deno.args[0]);
const listeners = Array.from(
  { length: count },
  () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
);
console.log(JSON.stringify(listeners.map((listener) => (listener.addr as Deno.NetAddr).port)));
const loops = listeners.map(async (listener) => {
  try {
    for await (const conn of listener) conn.close();
  } catch { /* closed */ }
});
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
for (const listener of listeners) listener.close();
await Promise.all(loops);
