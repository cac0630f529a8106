// A durable handler written with AWS's durable execution SDK for JavaScript: a step, a wait, a
// callback completed from outside, another step.
import { writeFileSync, renameSync } from "node:fs";
import { withDurableExecution } from "@aws/durable-execution-sdk-js";

export const handler = withDurableExecution(async (event, context) => {
  const added = await context.step("add", async () => event.x + 1);
  await context.wait("pause", { seconds: 30 });
  const approval = await context.waitForCallback("approval", async (callbackId) => {
    writeFileSync(`${process.env.OUT}/.callback.part`, JSON.stringify(callbackId));
    renameSync(`${process.env.OUT}/.callback.part`, `${process.env.OUT}/callback`);
  }, { timeout: { minutes: 60 } });
  const doubled = await context.step("double", async () => added * 2);
  return { result: doubled, approval };
});
