// Streams speech from the relay's OpenAI-compatible endpoint to a file with the official
// `openai` npm package, as a Node backend would.
// usage: node speech.mjs BASE_URL API_KEY TEXT_FILE OUT_FILE wav|pcm
import { createWriteStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import OpenAI from "openai";

const [baseURL, apiKey, textFile, outFile, format] = process.argv.slice(2);
const client = new OpenAI({ apiKey, baseURL: `${baseURL}/v1`, maxRetries: 0 });
const response = await client.audio.speech.create({
  model: "canopylabs/orpheus-v1-english",
  voice: "troy",
  input: readFileSync(textFile, "utf8"),
  response_format: format,
});
await pipeline(Readable.fromWeb(response.body), createWriteStream(outFile));
console.log(response.headers.get("x-sample-rate"));
