// The official Node SDKs (openai, cohere-ai), unmodified, on the endpoints
// besides chat (issue #19), against the gateway at BASE_URL with API_KEY.
// Exits non-zero with the reason when an answer is not what the SDK's
// users would get from the providers themselves. Run by test_endpoints.py.
import assert from "node:assert/strict";
import OpenAI from "openai";
import { CohereClientV2 } from "cohere-ai";

const base = process.env.BASE_URL;
const apiKey = process.env.API_KEY;
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey });

for (const model of ["text-embedding-3-small", "gemini-embedding-001"]) {
  // The SDK asks for base64 and decodes it.
  const r = await openai.embeddings.create({ model, input: ["first text", "second"], dimensions: 4 });
  assert.equal(r.data.length, 2, model);
  assert.equal(r.data[1].index, 1, model);
  assert.equal(r.data[0].embedding.length, 4, model);
  assert.ok(r.data[0].embedding.every((x) => Number.isFinite(x) && Math.abs(x) <= 1), model);
  assert.ok(r.usage.prompt_tokens > 0, model);
}
await assert.rejects(openai.embeddings.create({ model: "gemini-embedding-001", input: [[1, 2]] }), OpenAI.BadRequestError);

for (const model of ["gpt-image-2", "gemini-2.5-flash-image"]) {
  const r = await openai.images.generate({ model, prompt: "a red apple", n: 2 });
  assert.equal(r.data.length, 2, model);
  const b64 = await openai.images.generate({ model, prompt: "a pear", response_format: "b64_json" });
  assert.ok(b64.data[0].b64_json.length > 0, model);
}

const cohere = new CohereClientV2({ token: apiKey, environment: base });
for (const model of ["rerank-v3.5", "jina-reranker-v2"]) {
  const r = await cohere.rerank({ model, query: "red apple", documents: ["a car", "a red apple", "red"], topN: 2 });
  assert.deepEqual(r.results.map((x) => x.index), [1, 2], model);
}
console.log("node sdks: ok");
