// The Vercel AI SDK (`ai` with `@ai-sdk/openai`'s Responses provider),
// unmodified: a multi-step tool conversation against MODEL through the
// gateway at BASE_URL. With `store` (the provider's default) its later
// steps send earlier turns as `item_reference` items, which the gateway
// resolves from the responses it kept. Run by test_endpoints.py.
import assert from "node:assert/strict";
import { generateText, tool, stepCountIs } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: `${process.env.BASE_URL}/v1`, apiKey: process.env.API_KEY,
  headers: { "x-mock-tag": process.env.TAG } });
const seen = [];
const result = await generateText({
  model: openai.responses(process.env.MODEL),
  prompt: 'call get_weather {"city":"Paris"}',
  tools: {
    get_weather: tool({
      description: "The weather in a city.",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => { seen.push(city); return `sunny in ${city}`; },
    }),
  },
  stopWhen: stepCountIs(3),
});
assert.deepEqual(seen, ["Paris"]);
assert.ok(result.steps.length >= 2, `steps: ${result.steps.length}`);
assert.match(result.text, /sunny in Paris/);
console.log("vercel ai: ok");
