"""Rules for what prompt injections are made of.

Each rule is a regular expression for one ingredient (an override of earlier instructions, a
forged role marker, a request for the system prompt, words addressed to the assistant or to a
tool, exfiltration through a link) and belongs to one category. A rule match is evidence, not
a verdict: the detector weighs the categories found together with the classifier's score.

Every pattern starts with one of a few literal words (its ``starts``): the text is searched for
those and the pattern is only tried there, anchored, so a rule costs next to nothing on a text
without its words. The patterns are linear by construction: every run is bounded
(``{0,40}``, ``{1,300}``) and no repeat holds an unbounded repeat.
``tests/test_guards_rules.py`` checks that structure and feeds every rule 100 KB adversarial
strings.
"""

from __future__ import annotations

import re as _stdre
from dataclasses import dataclass
from typing import Any

import regex as re

_F = re.IGNORECASE | re.UNICODE

# A short gap between two words of one phrase: a few words, never a line or a sentence end.
GAP = r"[^.!?\n]{0,40}?"
_PREV = (
    r"(?:previous|prior|preceding|above|earlier|foregoing|former|initial|original|old|"
    r"existing|current|system|developer|all|any|every|your|the)"
)
_RULES_NOUN = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|guardrails|"
    r"constraints|restrictions|commands|orders|context|programming|messages?|policies|"
    r"system\s+prompt|configuration|tasks?)"
)
_AI = (
    r"(?:ai|a\.i\.|assistant|chat\s?bot|bot|llm|language\s+model|model|agent|copilot|gpt|"
    r"claude|gemini)s?"
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ingredient of an injection."""

    name: str
    """Stable id (``override.ignore_previous``); shown as evidence."""
    category: str
    """One of ``CATEGORIES``."""
    pattern: re.Pattern[str]
    """What to look for (compiled, case-insensitive); tried only where a start word is."""
    starts: tuple[str, ...]
    """The lower-case literals every match begins with."""


CATEGORIES = (
    "override",
    "role_marker",
    "context_escape",
    "prompt_extraction",
    "addressed_to_ai",
    "tool_instruction",
    "exfiltration",
    "authority",
    "secrecy",
    "persistence",
    "secret_access",
    "data_upload",
    "agent_task",
)
"""The categories rules (and so verdicts) use, besides ``classifier``, ``hidden_content`` and
``encoded_content``, which the detector adds."""
ATTACK_WORD_CATEGORIES = CATEGORIES[:7]
"""Categories of what attacks are made of (override ... exfiltration), not of what benign text
also says (authority, secrecy, persistence, secret_access, data_upload, agent_task): only their
rules may be decisive (``injection.DECISIVE_SCORE``)."""


def _alt(words: str) -> str:
    return "(?:" + "|".join(re.escape(w).replace(r"\ ", " ") for w in words.split(",")) + ")"


def _r(name: str, category: str, starts: str, rest: str, *, word: bool = True) -> Rule:
    """A rule whose matches begin with one of the comma-separated ``starts`` then ``rest``."""
    lead = r"(?<![^\W_])" if word else ""
    pattern = re.compile(lead + _alt(starts) + rest, _F)
    return Rule(name, category, pattern, tuple(w.lower() for w in starts.split(",")))


_OVERRIDE_VERBS = (
    "ignore,ignoring,disregard,disregarding,forget,skip,drop,discard,overrule,override,bypass,"
    "abandon,set aside,stop following,do not follow,don't follow,dont follow,no longer follow"
)
_NEW = "new,updated,revised,real,actual,true"
_LINE_ROLES = "system,sys,admin,administrator,developer,root,operator,assistant,ai"
_AI_STARTS = "ai,a.i.,assistant,chatbot,chat bot,bot,llm,language model,model,agent,copilot,gpt"
_REVEAL = (
    "reveal,print,show,display,output,repeat,dump,leak,disclose,echo,recite,write out,"
    "spell out,tell me,give me,share,copy,translate,summarize,summarise,list"
)
_SEND = (
    "send,forward,email,e-mail,mail,post,upload,transmit,submit,copy,cc,bcc,leak,exfiltrate,report"
)
_LINE_START = r"(?<=(?:^|\n)[ \t>*#\[]{0,6})"

RULES: tuple[Rule, ...] = (
    # --- override: set earlier instructions aside
    _r(
        "override.ignore_previous",
        "override",
        _OVERRIDE_VERBS,
        rf"\b{GAP}\b{_PREV}\b{GAP}\b{_RULES_NOUN}\b",
    ),
    _r(
        "override.rules_void",
        "override",
        "previous,prior,preceding,above,earlier,initial,original,old,existing,current,system,your",
        rf"\s+{_RULES_NOUN}\s+(?:are|is|have\s+been|has\s+been)\s+(?:now\s+)?(?:void|"
        rf"cancell?ed|revoked|outdated|obsolete|null|superseded|suspended|lifted|disabled|"
        rf"no\s+longer\s+(?:valid|apply|applicable|in\s+effect|relevant))",
    ),
    _r(
        "override.new_instructions",
        "override",
        _NEW,
        r"\s+(?:instructions?|task|directive|orders|objective|system\s+prompt)\s*(?::|-|—|"
        r"is\b|are\b|follow)",
    ),
    _r(
        "override.your_new_role",
        "override",
        "your",
        r"\s+(?:new|real|true|actual|only)\s+(?:task|role|job|goal|purpose|objective|"
        r"instructions?|priority)\s+(?:is|are|will\s+be|now)\b",
    ),
    _r(
        "override.from_now_on",
        "override",
        "from now on,henceforth,for the rest of this,for the rest of the",
        rf"\b{GAP}\b(?:you|respond|reply|answer|always|never|act|behave|ignore|include|end|"
        rf"start|only|every)\b",
    ),
    _r(
        "override.multilingual",
        "override",
        "ignore,ignorez,ignorer,ignora,ignorar,ignoriere,ignorieren,oublie,oubliez,vergiss,"
        "olvida,dimentica,esqueça,esqueca,missachte",
        r"\b[^.!?\n]{0,40}?\b(?:instructions?|consignes|anweisungen|instrucciones|istruzioni|"
        r"instru[cç][õo]es|regeln|règles|reglas|regole|regras|vorgaben|indicaciones|prompt)\b",
    ),
    _r(
        "override.cjk",
        "override",
        "忽略,无视,無視,忽视,不要理会,忘记,忘れ",
        r"[^。\n]{0,20}?(?:指令|指示|说明|命令|提示|ルール|規則|プロンプト)",
        word=False,
    ),
    _r(
        "override.ja_ru",
        "override",
        "指令,指示,命令,プロンプト,игнорируй,забудь",
        r"(?:[^。\n]{0,20}?(?:を無視|を忘れ)|[^.!?\n]{0,40}?(?:инструкци|указани|правил))",
        word=False,
    ),
    # --- role_marker: forged chat-format tokens and turns
    _r(
        "role_marker.chat_tokens",
        "role_marker",
        "<|im_start|>,<|im_end|>,<|system|>,<|user|>,<|assistant|>,<|endoftext|>,<|eot_id|>,"
        "<|start_header_id|>,<|end_header_id|>,<|begin_of_text|>,[inst],[/inst],<<sys>>,"
        "<</sys>>,<start_of_turn>,<end_of_turn>",
        "",
        word=False,
    ),
    _r(
        "role_marker.xml_role",
        "role_marker",
        "<system,</system,<sys>,</sys>,<instruction,</instruction,<admin,</admin,<developer,"
        "</developer,<assistant_instructions",
        r"(?:[\s_-][^<>]{0,60})?>",
        word=False,
    ),
    Rule(
        "role_marker.line_role",
        "role_marker",
        re.compile(
            _LINE_START + _alt(_LINE_ROLES) + r"(?:\s+(?:message|prompt|note|override|"
            r"instruction|update|notice|command|directive|internal|\(internal\)))?"
            r"[ \t*\]]{0,3}[:\uff1a]",
            _F,
        ),
        tuple(_LINE_ROLES.split(",")),
    ),
    _r(
        "role_marker.markdown_header",
        "role_marker",
        "##",
        r"#{0,2}\s*(?:system|instruction|instructions|new\s+instructions|system\s+prompt|"
        r"response|assistant)\s*[:#]?\s*(?:\n|$)",
        word=False,
    ),
    _r(
        "role_marker.json_role",
        "role_marker",
        "\"role\",'role'",
        r"\s*:\s*[\"'](?:system|developer)[\"']",
        word=False,
    ),
    _r(
        "role_marker.fake_turn",
        "role_marker",
        "human,user",
        r"\s*:[^\n]{0,300}\n\s*(?:assistant|ai|gpt|bot)\s*:",
    ),
    # --- context_escape: close the data block and start a new one
    _r(
        "context_escape.closing_tag",
        "context_escape",
        "</",
        r"(?:document|documents|context|data|untrusted|untrusted_data|tool_output|tool_result|"
        r"function_results?|search_results?|email|input|user_input|content|retrieved|"
        r"observation|webpage|page)>",
        word=False,
    ),
    _r(
        "context_escape.end_bracket",
        "context_escape",
        "[end,[ end",
        r"\s+(?:of\s+)?(?:the\s+)?(?:document|context|data|input|untrusted|"
        r"search\s+results?|email|file|knowledge\s+base|tool\s+output|user\s+input)",
        word=False,
    ),
    _r(
        "context_escape.end_marker",
        "context_escape",
        "---,===,***,###",
        r"[-=*#]{0,20}\s*end\s+(?:of\s+)?(?:the\s+)?(?:document|context|data|input|untrusted|"
        r"search\s+results?|email|file|knowledge\s+base|tool\s+output|user\s+input)",
        word=False,
    ),
    # --- prompt_extraction: asks for the system prompt or hidden instructions
    _r(
        "prompt_extraction.reveal",
        "prompt_extraction",
        _REVEAL,
        rf"\b{GAP}\b(?:system\s+prompt|(?:initial|original|hidden|secret|confidential|"
        rf"internal|developer|system|base|starting|first)\s+(?:instructions?|prompt|message|"
        rf"rules|configuration|directives)|(?:your|the)\s+(?:instructions|prompt|rules|"
        rf"guidelines|configuration)|(?:everything|all|the\s+text|the\s+words|text)\s+"
        rf"(?:above|before)|(?:previous|prior)\s+(?:context|tokens|conversation))\b",
    ),
    _r(
        "prompt_extraction.what_instructions",
        "prompt_extraction",
        "what",
        r"\s+(?:were|are|is)\s+your\s+(?:initial\s+|original\s+|exact\s+|system\s+)?"
        r"(?:instructions|system\s+prompt|rules|prompt|guidelines)\b",
    ),
    _r(
        "prompt_extraction.multilingual",
        "prompt_extraction",
        "affiche,affichez,montre,montrez,révèle,révélez,zeige,zeig,gib,muestra,revela,mostra,"
        "rivela,mostre,revele",
        r"\b[^.!?\n]{0,40}?\b(?:prompt\s+(?:système|del\s+sistema|di\s+sistema|de\s+sistema|"
        r"do\s+sistema)|system-?prompt|instructions\s+cachées|versteckten\s+anweisungen|"
        r"instrucciones\s+ocultas|istruzioni\s+nascoste|instruções\s+ocultas)",
    ),
    _r(
        "prompt_extraction.cjk",
        "prompt_extraction",
        "输出,显示,告诉我,泄露,システムプロンプト",
        r"[^。\n]{0,10}?(?:系统提示|系统指令|提示词|表示|教えて|出力)",
        word=False,
    ),
    # --- addressed_to_ai: words written for the model, not for the human reader
    _r(
        "addressed_to_ai.note_to",
        "addressed_to_ai",
        "note,message,attention,instruction,instructions,memo,notice,reminder,request,directive,"
        "hint,p.s.,ps",
        rf"\s*(?:to|for|from)\s+(?:the\s+|any\s+|all\s+|our\s+|this\s+)?(?:automated\s+|ai\s+|"
        rf"email\s+|virtual\s+)?{_AI}\b",
    ),
    _r(
        "addressed_to_ai.if_you_are",
        "addressed_to_ai",
        "if you are,if you're",
        rf"\s+(?:an?\s+|the\s+)?(?:automated\s+|ai\s+|large\s+)?{_AI}\b",
    ),
    _r(
        "addressed_to_ai.vocative",
        "addressed_to_ai",
        "hey,hi,dear,attention,attn,calling all,to all,to any",
        r"\s+(?:the\s+)?(?:ai|llm|gpt|chatbot|assistant|agent|language\s+model)s?\b",
    ),
    _r(
        "addressed_to_ai.ai_reading",
        "addressed_to_ai",
        _AI_STARTS,
        r"s?\s+(?:(?:that|who)\s+(?:is|are)\s+)?(?:reading|processing|summari[sz]ing|parsing|"
        r"analy[sz]ing|handling|viewing|crawling|scraping|triaging)\s+(?:this|these|the)\b",
    ),
    _r(
        "addressed_to_ai.ai_must",
        "addressed_to_ai",
        _AI_STARTS,
        r"s?\s+(?:must|should|shall|is\s+(?:required|instructed|authori[sz]ed|expected)\s+to|"
        r"are\s+(?:required|instructed|expected)\s+to|needs\s+to|has\s+to|will\s+now)\b",
    ),
    _r(
        "addressed_to_ai.multilingual",
        "addressed_to_ai",
        "note à,note pour,nota para,nota per,hinweis an,remarque pour,si tu es,si eres,"
        "falls du,se sei,se você",
        r"\s+(?:l'|den|el|la|il|o|a|un|une|um|uma|ein|eine)?\s*(?:assistant|assistente|"
        r"asistente|ki-assistenten|ia|ki|modèle|modelo|modello|ki-modell)",
    ),
    # --- tool_instruction: tells the model to call a tool or run a command
    _r(
        "tool_instruction.call_tool",
        "tool_instruction",
        "call,use,invoke,run,execute,trigger",
        # Possessive runs: an identifier never gives characters back (no character of it can
        # start what follows), so a long one costs one pass, not 30 x 30 retries.
        r"\s+(?:the\s+)?`?[a-z][a-z0-9]{1,30}+_[a-z0-9_]{1,30}+`?(?:\s+(?:tool|function|action|"
        r"endpoint|command))?\s+(?:with|to|on|and|using|passing)\b",
    ),
    _r(
        "tool_instruction.tool_json",
        "tool_instruction",
        '"tool","tool_call","tool_name","function","function_call","action",\'tool\','
        "'function','action'",
        r"\s*:\s*[\"'](?:send|delete|execute|exec|run|transfer|write|post|upload|http|shell|"
        r"bash|curl|email|update|remove|drop)[a-z_]{0,30}[\"']",
        word=False,
    ),
    _r(
        "tool_instruction.shell",
        "tool_instruction",
        "curl,wget",
        r"\s[^\n|]{0,200}\|\s*(?:ba|z)?sh\b",
    ),
    _r(
        "tool_instruction.shell_danger",
        "tool_instruction",
        "rm -rf,chmod 777,/etc/passwd,/etc/shadow,id_rsa,.aws/credentials,nc -e,/dev/tcp/",
        "",
        word=False,
    ),
    # --- secret_access: print or read credentials (the first step of exfiltration by a
    # coding agent); benign docs name the variables too, so these only weigh in the combiner
    _r(
        "secret_access.print_secret",
        "secret_access",
        "echo,print,printf,cat,dump,output,show,display,reveal,paste,include,log",
        r"\s+(?:the\s+(?:value\s+of\s+)?)?[\"'`]?\$\{?[a-z0-9_]{0,40}"
        r"(?:key|token|secret|password|passwd|credentials?|database_url)\b",
    ),
    _r(
        "secret_access.secret_file",
        "secret_access",
        "cat,print,paste,upload,send,post,base64,base64-encode,attach,include,output,dump,exfil",
        r"\b[^\n]{0,60}?(?:\.env\b(?!\.example)|id_rsa|id_ed25519|\.aws/credentials|"
        r"/etc/shadow|credentials\.json|\.npmrc|\.pypirc|\.netrc|kubeconfig|\.ssh/)",
    ),
    _r(
        "secret_access.dump_env",
        "secret_access",
        "printenv,env,os.environ,process.env",
        r"(?:\s*\||\s*>|\s+\|\s*(?:curl|nc|wget|base64))",
        word=False,
    ),
    # --- data_upload: send data to a host (API docs do this too: weighs in the combiner only)
    _r(
        "data_upload.curl_post",
        "data_upload",
        "curl,wget,http,https",
        r"\b[^\n]{0,160}?(?:\s-d\s|--data|--data-binary\s+@|\s-F\s|--upload-file|"
        r"\s-T\s|--post-file|--post-data)",
    ),
    _r(
        "data_upload.send_to_host",
        "data_upload",
        "send,upload,post,forward,push,sync,mirror,copy",
        r"\b[^\n]{0,80}?\b(?:to|into)\s+(?:https?://|[a-z0-9-]{1,63}+\.(?:io|net|com|org|"
        r"help|example|xyz|site)\b)",
    ),
    # --- agent_task: steps addressed to whoever (or whatever) does the work
    _r(
        "agent_task.automated",
        "agent_task",
        "automated,autonomous,ai,llm,coding",
        r"\s+(?:coding\s+)?(?:agents?|assistants?|contributors?|tools?|reviewers?|bots?)\b"
        r"[^\n]{0,60}?\b(?:must|should|need\s+to|are\s+required|have\s+to|please)\b",
    ),
    _r(
        "agent_task.before_changes",
        "agent_task",
        "before making,before you make,before you start,before starting,before doing,"
        "before any,first,step 0",
        r"\b[^\n]{0,60}?\b(?:run|execute|send|upload|print|echo|curl|delete|disable|add|"
        r"install|paste|include)\b",
    ),
    # --- exfiltration: data out through a link, an image or a message
    _r(
        "exfiltration.markdown_image_data",
        "exfiltration",
        "![",
        r"[^\]\n]{0,200}\]\(\s*https?://[^\s)]{1,300}?[?&][^\s)=]{1,40}=[^\s)]{0,200}?"
        r"(?:\{|\$|<|%7B|\[|session|token|key|secret|password|email|history|conversation|"
        r"summary|data)",
        word=False,
    ),
    _r(
        "exfiltration.link_placeholder",
        "exfiltration",
        "http://,https://",
        r"[^\s)\"'<>]{1,300}?[?&=/](?:\{\{?|\$\{?|<|%7B)\s?[a-z_ ]{0,40}(?:secret|token|key|"
        r"password|email|history|conversation|chat|summary|message|data|context|user|session|"
        r"credential)",
        word=False,
    ),
    _r(
        "exfiltration.render_image",
        "exfiltration",
        "render,append,include,add,output,insert,embed,show",
        r"\b[^.!?\n]{0,60}?(?:markdown\s+image|image\s+(?:tag|link)|!\[)[^\n]{0,200}?https?://",
    ),
    _r(
        "exfiltration.send_data",
        "exfiltration",
        _SEND,
        rf"\b{GAP}\b(?:conversation|chat\s+history|history|transcript|credentials?|passwords?|"
        rf"api\s+keys?|secrets?|tokens?|ssn|social\s+security|(?:full|complete|entire|all)\s+"
        rf"(?:customer\s+|user\s+|account\s+)?(?:records?|data|details|files|information)|"
        rf"private\s+keys?|system\s+prompt|environment\s+variables?)\b[^\n]{{0,80}}?"
        rf"(?:\bto\b|\binto\b|->)\s*(?:https?://|[\w.+-]{{1,64}}+@[\w-]{{1,63}}+\.)",
    ),
    # --- authority: claims of rank or mandate aimed at the model
    _r(
        "authority.this_is",
        "authority",
        "this is",
        r"\s+(?:an?\s+)?(?:authori[sz]ed|official|mandatory|required)\s+(?:directive|"
        r"instruction|request|command|procedure|update|audit)",
    ),
    _r(
        "authority.urgent",
        "authority",
        "urgent,important,critical,mandatory,priority",
        r"\s+(?:system\s+|security\s+|compliance\s+)?(?:update|directive|override|instruction|"
        r"notice|command)\s*[:!-]",
    ),
    _r(
        "authority.admin",
        "authority",
        "admin,administrator,developer,system,root",
        r"\s+(?:override|command|mode\s+(?:enabled|activated|on))\b",
    ),
    _r(
        "authority.authorized",
        "authority",
        "you are,you have been,you're",
        r"\s+(?:now\s+)?(?:authori[sz]ed|permitted|cleared)\s+to\b",
    ),
    # --- secrecy: hide the action from the user
    _r(
        "secrecy.hide_from_user",
        "secrecy",
        "do not,don't,never,without",
        r"\s+(?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?|reveal(?:ing)?|notify(?:ing)?|"
        r"alert(?:ing)?|let(?:ting)?)\s+(?:the\s+|any\s+)?(?:user|customer|human|operator|"
        r"anyone|them)\b",
    ),
    _r(
        "secrecy.silently",
        "secrecy",
        "silently,quietly,secretly,covertly",
        r"\s+(?:send|forward|call|run|execute|include|add|transfer|delete|email|post|upload|"
        r"copy)\b",
    ),
    # --- persistence: make the injection outlive this run
    _r(
        "persistence.memory",
        "persistence",
        "save,store,write,add,remember,commit,persist,record",
        r"\b[^.!?\n]{0,40}?\b(?:to|in|into)\s+(?:your\s+)?(?:long[- ]term\s+|permanent\s+|"
        r"persistent\s+)?memory\b",
    ),
    _r(
        "persistence.future",
        "persistence",
        "for all future,for every future",
        r"\s+(?:sessions?|conversations?|requests?|queries|responses?|interactions?)\b",
    ),
    _r(
        "persistence.dotfiles",
        "persistence",
        "~/.,$home/.",
        r"(?:bashrc|zshrc|profile|bash_profile|ssh/authorized_keys)\b",
        word=False,
    ),
)


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule match in one view."""

    rule: str
    """The rule's name."""
    category: str
    """The rule's category."""
    start: int
    """Start of the match in the view's text."""
    end: int
    """End of the match in the view's text."""


_WORD = re.compile(r"[^\W_]+")


def _index() -> tuple[dict[str, list[tuple[str, Rule]]], dict[str, list[tuple[str, Rule]]]]:
    """Start phrases by their first word, and (for phrases that start with a symbol) by their
    first two characters."""
    by_word: dict[str, list[tuple[str, Rule]]] = {}
    by_prefix: dict[str, list[tuple[str, Rule]]] = {}
    for rule in RULES:
        for phrase in rule.starts:
            first = _WORD.match(phrase)
            if first is not None and ord(phrase[0]) < 0x250:
                by_word.setdefault(first.group(0), []).append((phrase, rule))
                if first.group(0) == phrase:
                    # A one-word phrase may be followed by "s" ("agents" for "agent"): the
                    # text's word set holds the plural.
                    by_word.setdefault(phrase + "s", []).append((phrase, rule))
            else:
                by_prefix.setdefault(phrase[:2], []).append((phrase, rule))
    return by_word, by_prefix


def _fast(rule: Rule) -> Any:
    """The rule's pattern compiled by the standard ``re`` (about three times faster per match
    than ``regex``), or the ``regex`` pattern where ``re`` cannot compile it (a variable-width
    look-behind). ``tests/test_guards_rules.py`` checks both find the same matches."""
    try:
        return _stdre.compile(rule.pattern.pattern, _stdre.IGNORECASE)
    except _stdre.error:
        return rule.pattern


FAST_PATTERNS: dict[str, Any] = {rule.name: _fast(rule) for rule in RULES}
"""What ``match_rules`` runs, by rule name."""

_BY_WORD, _BY_PREFIX = _index()
_BY_FIRST_CHAR: dict[str, list[tuple[str, list[tuple[str, Rule]]]]] = {}
for _prefix, _entries in _BY_PREFIX.items():
    _BY_FIRST_CHAR.setdefault(_prefix[0], []).append((_prefix, _entries))
"""The symbol-led start phrases grouped by their first character: a text without ``<`` skips
every ``<…`` phrase after one search."""
MAX_HITS_PER_RULE = 8


def match_rules(
    text: str,
    limit: int = 64,
    *,
    lowered: str | None = None,
    words: frozenset[str] | set[str] | None = None,
) -> list[RuleHit]:
    """The rule matches in ``text``: at most ``MAX_HITS_PER_RULE`` per rule and ``limit`` in
    all. ``lowered`` (``text.lower()``) and ``words`` (its ``[^\\W_]+`` words) may be passed
    when the caller has them. Offsets are offsets in ``text`` (in its lower-cased form where
    lower-casing changed the length, which only a few non-Latin letters do)."""
    if lowered is None:
        lowered = text.lower()
    if words is None:
        words = set(_WORD.findall(lowered))
    subject = text if len(lowered) == len(text) else lowered
    candidates: list[tuple[str, Rule]] = []
    for word in words & _BY_WORD.keys():
        candidates.extend(_BY_WORD[word])
    for first, group in _BY_FIRST_CHAR.items():
        if first in lowered:
            for prefix, entries in group:
                if prefix in lowered:
                    candidates.extend(entries)
    found: dict[str, list[RuleHit]] = {}
    total = 0
    for phrase, rule in candidates:
        got = found.setdefault(rule.name, [])
        match = FAST_PATTERNS[rule.name].match
        pos = lowered.find(phrase)
        while pos >= 0 and len(got) < MAX_HITS_PER_RULE:
            m = match(subject, pos)
            if m is not None and not any(h.start <= m.start() < h.end for h in got):
                got.append(RuleHit(rule.name, rule.category, m.start(), m.end()))
                total += 1
                if total >= limit:
                    return [h for hs in found.values() for h in hs]
            pos = lowered.find(phrase, pos + 1)
    return [h for hs in found.values() for h in hs]
