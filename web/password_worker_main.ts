/**
 * The password worker's entry when the program runs from source (tests,
 * `deno run`). A bundled or compiled program has no separate file to start,
 * so there main.ts hands its own module to the web layer, which starts it as
 * the worker and it calls {@link servePasswordChecks} itself.
 * @module
 */

import { servePasswordChecks } from "./password_worker.ts";

servePasswordChecks();
