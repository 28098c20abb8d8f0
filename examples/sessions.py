"""A session: the server keeps the conversation, so each request sends only the new turn
(pip install openai).

The client picks the session id. It goes in the body (`session_id`, not part of OpenAI's
API, hence extra_body) and in the X-Session-Id header, which lets nginx in front of
several servers send every turn of a session to the same one (contrib/nginx.conf).

Set OPENAI_BASE_URL (default http://127.0.0.1:8000/v1) and OPENAI_API_KEY (one of the
server's API_KEYS; any value when it has none).
"""

import os
import uuid

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "unused"),
)
session_id = f"example-{uuid.uuid4()}"

for question in ("My name is Ada. Please remember it.", "What is my name?"):
    reply = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": question}],
        extra_body={"session_id": session_id},
        extra_headers={"X-Session-Id": session_id},
    )
    print(f"> {question}")
    print(reply.choices[0].message.content)
