"""One question, one answer, with the openai package (pip install openai).

Set OPENAI_BASE_URL (default http://127.0.0.1:8000/v1) and OPENAI_API_KEY (one of the
server's API_KEYS; any value when it has none).
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "unused"),
)

reply = client.chat.completions.create(
    model="claude-sonnet-4-5",
    messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three prime numbers."},
    ],
)
print(reply.choices[0].message.content)
usage = reply.usage
if usage is not None:
    print(f"tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out")
# Not part of OpenAI's API: what the run cost, as Claude Code reports it.
print(f"cost: ${reply.model_extra['cost_usd']:.6f}")
