"""Function calling, the whole round trip (pip install openai).

Claude asks for a function call; this program runs the function and sends the result
back; Claude answers with it. The server never runs your functions: it only passes the
calls and the results along, as OpenAI's API does.

Set OPENAI_BASE_URL (default http://127.0.0.1:8000/v1) and OPENAI_API_KEY (one of the
server's API_KEYS; any value when it has none).
"""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "unused"),
)
MODEL = "claude-sonnet-4-5"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def get_weather(city: str) -> dict[str, object]:
    return {"city": city, "temperature_c": 21, "sky": "clear"}


messages = [{"role": "user", "content": "What is the weather in Paris?"}]
reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
message = reply.choices[0].message
# The assistant's turn, with its calls, goes back as part of the conversation.
messages.append(message.model_dump(exclude_none=True))
for call in message.tool_calls or []:
    arguments = json.loads(call.function.arguments)
    print(f"call: {call.function.name}({arguments})")
    result = get_weather(**arguments)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})

final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
print(f"answer: {final.choices[0].message.content}")
