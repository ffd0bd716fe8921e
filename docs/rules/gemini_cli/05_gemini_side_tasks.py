"""Example rule (docs/gemini.md): Gemini CLI's side tasks ask for Gemini model ids.

Gemini CLI runs some work on fixed Gemini models whatever `-m` says: compressing a long
conversation (`gemini-3-pro-preview`), loop detection, summaries (`gemini-*-flash*`). This gateway
serves none of them, so those requests would get a 404. This rule sends every `gemini-*` or
`gemma-*` id a Gemini client asks for to one OpenCode Go model instead. Copy it into your
`--rules-dir` (its name sorts before the built-in rules, so it runs first) and set SIDE_MODEL.
"""
SIDE_BACKEND = "opencode-go"
SIDE_MODEL = "glm-5.1"


class GeminiSideTasks:
    def apply(self, ctx):
        if ctx.frontend == "gemini" and ctx.backend is None \
                and ctx.requested.startswith(("gemini-", "gemma-")):
            ctx.backend, ctx.model_id = SIDE_BACKEND, SIDE_MODEL


RULE = GeminiSideTasks()
