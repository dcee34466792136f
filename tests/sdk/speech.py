"""Streams speech from the relay's OpenAI-compatible endpoint to a file with an official SDK.

usage: speech.py openai|groq BASE_URL API_KEY TEXT_FILE OUT_FILE FORMAT|default [EXTRA_BODY_JSON]

The openai package is pointed at BASE_URL/v1 (it posts to /audio/speech under it), the groq
package at BASE_URL (it posts to /openai/v1/audio/speech), as their users would. Prints the
response's x-sample-rate header. SDK retries are off, so a failure shows as one.
"""

import json
import sys

sdk, base_url, key, text_file, out_file, response_format = sys.argv[1:7]
# The relay's extensions (markup, lexicon) go where the SDKs pass unknown fields.
extra_body = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None
with open(text_file, encoding="utf-8") as f:
    text = f.read()

if sdk == "openai":
    from openai import OpenAI

    client = OpenAI(api_key=key, base_url=base_url + "/v1", max_retries=0)
else:
    from groq import Groq

    client = Groq(api_key=key, base_url=base_url, max_retries=0)

# "default": no response_format at all, as OpenAI's quickstart sends it (MP3 comes back).
options = {} if response_format == "default" else {"response_format": response_format}
with client.audio.speech.with_streaming_response.create(
    model="canopylabs/orpheus-v1-english",
    voice="troy",
    input=text,
    extra_body=extra_body,
    **options,
) as response:
    response.stream_to_file(out_file)
    print(response.headers.get("x-sample-rate"))
