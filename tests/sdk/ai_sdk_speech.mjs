// Generates speech with the AI SDK (`generateSpeech` from `ai`, its OpenAI provider from
// `@ai-sdk/openai`), the provider's base URL pointed at the relay, OpenAI's model and voice
// names and the SDK's defaults otherwise. Writes the audio to OUT_FILE; prints its media type.
// usage: node ai_sdk_speech.mjs BASE_URL API_KEY TEXT_FILE OUT_FILE
import { readFileSync, writeFileSync } from "node:fs";
import { createOpenAI } from "@ai-sdk/openai";
import { generateSpeech } from "ai";

const [baseURL, apiKey, textFile, outFile] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${baseURL}/v1`, apiKey });
const { audio } = await generateSpeech({
  model: openai.speech("tts-1"),
  text: readFileSync(textFile, "utf8"),
  voice: "alloy",
  maxRetries: 0,
});
writeFileSync(outFile, audio.uint8Array);
console.log(audio.mediaType);
