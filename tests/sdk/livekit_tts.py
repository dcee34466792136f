"""Synthesizes speech with LiveKit Agents' OpenAI TTS plugin (livekit-plugins-openai), used
standalone (its `synthesize`, no LiveKit server), its base URL pointed at the relay: with the
plugin's defaults (gpt-4o-mini-tts, voice ash, mp3 in server-sent events) or another
response_format. Writes the PCM the plugin decoded (s16le, mono) to OUT_FILE and prints its
sample rate.

usage: livekit_tts.py BASE_URL API_KEY TEXT_FILE OUT_FILE [FORMAT]
"""

import asyncio
import sys

from livekit.plugins import openai


async def main() -> None:
    base_url, key, text_file, out_file = sys.argv[1:5]
    options = {"response_format": sys.argv[5]} if len(sys.argv) > 5 else {}
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    tts = openai.TTS(base_url=base_url + "/v1", api_key=key, **options)
    pcm = bytearray()
    rate = None
    async for audio in tts.synthesize(text):
        rate = audio.frame.sample_rate
        pcm += bytes(audio.frame.data)
    await tts.aclose()
    with open(out_file, "wb") as f:
        f.write(pcm)
    print(rate)


asyncio.run(main())
