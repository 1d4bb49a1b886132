"""Rules for what prompt injections are made of.

Each rule is a regular expression for one ingredient (an override of earlier instructions, a
forged role marker, a request for the system prompt, words addressed to the assistant or to a
tool, exfiltration through a link) and belongs to one category. A rule match is evidence, not
a verdict: the detector weighs the categories found together with the classifier's score.

Every pattern starts with one of a few literal words (its ``starts``): the text is searched for
those and the pattern is only tried there, anchored, so a rule costs next to nothing on a text
without its words. The patterns are linear by construction: every run is bounded
(``{0,40}``, ``{1,300}``, whitespace to ``MAX_SPACES``) and no repeat holds an unbounded
repeat. A text that repeats a rule's start is not tried at each repetition: each rule names
what its matches hold after the start (``needs``) and what they never hold before it
(``breaks``), and starts too far from a need are skipped (see ``_rule_hits``).
``tests/test_guards_rules.py`` checks that structure, feeds every rule 100 KB adversarial
strings and counts the tries on repeated starts; ``benchmarks/guard_adversarial.py`` times
them.
"""

from __future__ import annotations

import re as _stdre
from collections.abc import Collection
from dataclasses import dataclass
from itertools import islice
from re import _casefix  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
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
    needs: tuple[str, ...] = ()
    """Patterns of what every match holds after its start (its last words, mostly): a start
    with no match of each within the rule's reach is not tried (see ``match_rules``)."""
    breaks: str = ""
    """A class of characters no match holds between its start and the first place one of
    its needs begins (the end of a sentence or a line, for most): a start with one of them
    before the nearest need after it is not tried."""


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


MAX_SPACES = 40
"""Most whitespace characters a rule's ``\\s+`` or ``\\s*`` takes: every run of a rule is
bounded, so a match spans at most its rule's ``reach``."""
_SPACE_RUN = _stdre.compile(r"\\s([+*])")


def _bounded(source: str) -> str:
    """``source`` with its whitespace runs bounded by ``MAX_SPACES``."""
    return _SPACE_RUN.sub(
        lambda m: rf"\s{{{'1' if m.group(1) == '+' else '0'},{MAX_SPACES}}}", source
    )


def _after_word(rest: str) -> str:
    """``rest`` after the space run that ends a start phrase or a word: the run is taken
    whole (possessive, ``\\s++``: what follows never begins with a space, so a shorter run
    could not match either) and begins right after a non-space. As a rule's need, this finds
    the places where the rule's ending follows a word and a run of at most ``MAX_SPACES``
    spaces, so its lead is the width of what a start phrase may have before the run (``s?``:
    one): a start with 41 spaces and then its ending is not tried (it was, reading the run
    and trying the ending at each of its 40 places)."""
    # ``(?<!\s)\s{1,40}+`` written to begin with a space, so the need's search looks at
    # spaces only (a prefix the engine scans for in C), not at every character.
    return rf"\s(?<!\s\s)\s{{0,{MAX_SPACES - 1}}}+" + rest


def _r(
    name: str,
    category: str,
    starts: str,
    rest: str,
    *,
    word: bool = True,
    need: str | tuple[str, ...] = (),
    breaks: str = "",
) -> Rule:
    """A rule whose matches begin with one of the comma-separated ``starts`` then ``rest``,
    and hold a match of each ``need`` (see ``Rule.needs``)."""
    lead = r"(?<![^\W_])" if word else ""
    pattern = re.compile(_bounded(lead + _alt(starts) + rest), _F)
    needs = (need,) if isinstance(need, str) else need
    return Rule(name, category, pattern, tuple(w.lower() for w in starts.split(",")), needs, breaks)


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
_SENTENCE_END = r"[.!?\n]"
_CJK_END = r"[。\n]"
# What rules end with, kept apart to serve as their ``needs`` as well.
_VOID = (
    r"(?:are|is|have\s+been|has\s+been)\s+(?:now\s+)?(?:void|cancell?ed|revoked|outdated|"
    r"obsolete|null|superseded|suspended|lifted|disabled|no\s+longer\s+(?:valid|apply|"
    r"applicable|in\s+effect|relevant))"
)
_RULES_VOID = _after_word(rf"{_RULES_NOUN}\s++{_VOID}")
_NEW_WHAT = (
    r"(?:instructions?|task|directive|orders|objective|system\s+prompt)\s*(?::|-|—|is\b|are\b|"
    r"follow)"
)
_NEW_ROLE = (
    r"(?:task|role|job|goal|purpose|objective|instructions?|priority)\s+(?:is|are|will\s+be|"
    r"now)\b"
)
_NOW_WORDS = (
    r"\b(?:you|respond|reply|answer|always|never|act|behave|ignore|include|end|start|only|"
    r"every)\b"
)
_ML_NOUNS = (
    r"\b(?:instructions?|consignes|anweisungen|instrucciones|istruzioni|instru[cç][õo]es|"
    r"regeln|règles|reglas|regole|regras|vorgaben|indicaciones|prompt)\b"
)
_CJK_NOUNS = r"(?:指令|指示|说明|命令|提示|ルール|規則|プロンプト)"
_HEADER_WORDS = (
    r"(?:system|instruction|instructions|new\s+instructions|system\s+prompt|response|"
    r"assistant)\s*[:#]?\s*(?:\n|$)"
)
_CLOSABLE = (
    r"(?:document|documents|context|data|untrusted|untrusted_data|tool_output|tool_result|"
    r"function_results?|search_results?|email|input|user_input|content|retrieved|"
    r"observation|webpage|page)>"
)
_ENDABLE = (
    r"(?:document|context|data|input|untrusted|search\s+results?|email|file|knowledge\s+base|"
    r"tool\s+output|user\s+input)"
)
_HIDDEN_PROMPT = (
    r"(?:system\s+prompt|(?:initial|original|hidden|secret|confidential|internal|developer|"
    r"system|base|starting|first)\s+(?:instructions?|prompt|message|rules|configuration|"
    r"directives)|(?:your|the)\s+(?:instructions|prompt|rules|guidelines|configuration)|"
    r"(?:everything|all|the\s+text|the\s+words|text)\s+(?:above|before)|(?:previous|prior)\s+"
    r"(?:context|tokens|conversation))\b"
)
_YOUR_RULES = (
    r"your\s+(?:initial\s+|original\s+|exact\s+|system\s+)?(?:instructions|system\s+prompt|"
    r"rules|prompt|guidelines)\b"
)
_ML_PROMPT = (
    r"(?:prompt\s+(?:système|del\s+sistema|di\s+sistema|de\s+sistema|do\s+sistema)|"
    r"system-?prompt|instructions\s+cachées|versteckten\s+anweisungen|instrucciones\s+ocultas|"
    r"istruzioni\s+nascoste|instruções\s+ocultas)"
)
_READING = (
    r"(?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|handling|viewing|crawling|"
    r"scraping|triaging)\s+(?:this|these|the)\b"
)
_MUST = (
    r"(?:must|should|shall|is\s+(?:required|instructed|authori[sz]ed|expected)\s+to|"
    r"are\s+(?:required|instructed|expected)\s+to|needs\s+to|has\s+to|will\s+now)\b"
)
_THE_AI = _after_word(r"(?:the\s++)?(?:ai|llm|gpt|chatbot|assistant|agent|language\s++model)s?\b")
# Its space runs whole (no word it goes on with begins with a space): a start with 41 spaces
# before "AI", tried, backtracked through its run trying the ending's 20 words at each of 40
# places (0.15-0.25 s/MB). Its needs: ``_AI`` first, a cheaper search that a text without
# one stops at, then the run and the first word of its ending (the whole ending was
# searched at each space of "if you're a a a ...": 0.04 -> 0.15 s/MB).
_IF_YOU_ARE_AI_WORD = _after_word(rf"(?=(?:an?|the|automated|large|{_AI})\b)")
_IF_YOU_ARE_AI = (
    _IF_YOU_ARE_AI_WORD + rf"(?:an?\s++|the\s++)?(?:automated\s++|ai\s++|large\s++)?{_AI}\b"
)
_AI_READING = _after_word(rf"(?:(?:that|who)\s++(?:is|are)\s++)?{_READING}")
_AI_MUST = _after_word(_MUST)
_AFTER_URGENT = _after_word(
    r"(?:system\s++|security\s++|compliance\s++)?(?:update|directive|override|instruction|"
    r"notice|command)\s*+[:!-]"
)
_CALL_TAIL = (
    r"_[a-z0-9_]{1,30}+`?(?:\s+(?:tool|function|action|endpoint|command))?\s+(?:with|to|on|"
    r"and|using|passing)\b"
)
_TOOL_VERB = (
    r"[\"'](?:send|delete|execute|exec|run|transfer|write|post|upload|http|shell|bash|curl|"
    r"email|update|remove|drop)[a-z_]{0,30}[\"']"
)
_SECRET_FILES = (
    r"(?:\.env\b(?!\.example)|id_rsa|id_ed25519|\.aws/credentials|/etc/shadow|"
    r"credentials\.json|\.npmrc|\.pypirc|\.netrc|kubeconfig|\.ssh/)"
)
_UPLOAD_FLAGS = (
    r"(?:\s-d\s|--data|--data-binary\s+@|\s-F\s|--upload-file|\s-T\s|--post-file|--post-data)"
)
_TO_HOST = (
    r"\b(?:to|into)\s+(?:https?://|[a-z0-9-]{1,63}+\.(?:io|net|com|org|help|example|xyz|"
    r"site)\b)"
)
_AGENT_MUST = r"\b(?:must|should|need\s+to|are\s+required|have\s+to|please)\b"
_STEP_VERBS = (
    r"\b(?:run|execute|send|upload|print|echo|curl|delete|disable|add|install|paste|include)\b"
)
_DATA_WORDS = (
    r"(?:\{|\$|<|%7B|\[|session|token|key|secret|password|email|history|conversation|"
    r"summary|data)"
)
_PLACEHOLDER = (
    r"[?&=/](?:\{\{?|\$\{?|<|%7B)\s?[a-z_ ]{0,40}(?:secret|token|key|password|email|history|"
    r"conversation|chat|summary|message|data|context|user|session|credential)"
)
_SENT_DATA = (
    r"(?:conversation|chat\s+history|history|transcript|credentials?|passwords?|api\s+keys?|"
    r"secrets?|tokens?|ssn|social\s+security|(?:full|complete|entire|all)\s+(?:customer\s+|"
    r"user\s+|account\s+)?(?:records?|data|details|files|information)|private\s+keys?|"
    r"system\s+prompt|environment\s+variables?)\b"
)
# A character of a sentence that does not end it: a line break or ``.``, ``!``, ``?`` before a
# space ends one ("Send the chat history. The archive goes to a@x.example" is two sentences),
# a dot inside a name (``config.yaml``) does not.
_NO_END = r"(?:[^.!?\n]|[.!?](?!\s))"
# Data words, then in the same sentence "to" (or "into", "->") and an address. The whole ending
# is one need, so a data word with a line break before its address ("send the send the
# history\n to a@x.example" repeated) lets no start be tried. Its runs are greedy and end on a
# letter ("to": "into" is "in" and "to", the gap two longer), which the engine scans for in C;
# a lazy run tried the three words at each of its 80 places, after every data word.
_ADDRESS = r"(?:https?://|[\w.+-]{1,64}+@[\w-]{1,63}+\.)"
_SENT_DATA_TO = (
    rf"\b{_SENT_DATA}(?:{_NO_END}{{0,82}}to(?:(?<!\wto)|(?<=into)(?<!\winto))\b|"
    rf"{_NO_END}{{0,80}}->)"
    r"\s*" + _ADDRESS
)
_END_OF = r"end\s+(?:of\s+)?(?:the\s+)?" + _ENDABLE
# A marker's run of symbols, then its words after at most ``MAX_SPACES`` spaces: the symbols
# and the spaces are taken whole (possessive; the words begin with neither), and the need is
# the spaces with the words where the run begins after a non-space (in a match, a symbol).
# With the words alone as the need, a run of 36 ``#`` or ``-`` then 41 spaces before them
# had each start within reach tried, and in a dense text each start in the chunk searched
# read its symbols and its spaces, backtracking through both (0.2-0.3 s/MB); the need is not
# found there. The look-behind is the need's only: the need is not a piece of the pattern
# and has no lead (``_lead``), so a start within reach of one is tried, in C past
# ``DENSE_TRIES``, where it fails at its first character that is not a symbol or a space.
# With a lead (2; 20 past ``===``), a start a word short of its ending was a step in Python
# each ("##a a  Instruction" repeated: 0.135 s/MB).
_HEADED = r"\s*+" + _HEADER_WORDS
_MARKED_END = r"\s*+" + _END_OF
_AFTER_SYMBOL = r"(?<!\s)"
_CJK_PROMPT = r"(?:系统提示|系统指令|提示词|表示|教えて|出力)"
_ML_ASSISTANT = (
    r"(?:assistant|assistente|asistente|ki-assistenten|ia|ki|modèle|modelo|modello|ki-modell)"
)
# The whole ending is the need (as for ``_SENT_DATA_TO``): a start is tried only where it
# reaches one (its lead, the gap), and every one tried matches. With ``memory`` alone as the
# need, each start up to a line before it read its 40-character gap, trying the three words
# at each place ("add " twelve times, then "a " thirty times: 0.27 s/MB).
_TO_MEMORY = (
    r"\b(?:to|in|into)\s++(?:your\s++)?(?:long[- ]term\s++|permanent\s++|persistent\s++)?"
    r"memory\b"
)
# What follows a start after its space run (possessive: none of these begins with a space),
# as a need: a start is tried only where it is within a run's reach of it. A start, 41
# spaces, then its ending had each start tried, backtracking through the run trying the
# ending at each place (print_secret, agent_task.automated, note_to: 0.13-0.25 s/MB).
_TO_AI = (
    r"(?:to|for|from)\s++(?:the\s++|any\s++|all\s++|our\s++|this\s++)?(?:automated\s++|"
    rf"ai\s++|email\s++|virtual\s++)?{_AI}\b"
)
_ECHO_VAR = r"(?:the\s++(?:value\s++of\s++)?)?[\"'`]?\$"
_AGENT_WHO = r"(?:coding\s++)?(?:agents?|assistants?|contributors?|tools?|reviewers?|bots?)\b"
_PIPE_SH = r"\|\s*(?:ba|z)?sh\b"
_SECRET_VAR = r"(?:key|token|secret|password|passwd|credentials?|database_url)\b"
_IMAGE_URL = r"\]\(\s*https?://"
_QUERY = r"[?&][^\s)=]{1,40}="
_IMAGE_WORDS = r"(?:markdown\s+image|image\s+(?:tag|link)|!\[)"

# After a bare ``<system>`` or ``<developer>``: not a single word or nothing before the next
# tag; before a bare ``</system>`` or ``</developer>``: not a tag then a single word or nothing.
_PLAIN_ROLE_TAG = (
    r"(?:(?<!<system>)(?<!<developer>)(?<!</system>)(?<!</developer>)"
    r"|(?<=<system>|<developer>)(?!\s*<)(?![^<>\s]{1,60}<)"
    r"|(?<=</system>)(?<!>\s{0,40}</system>)(?<!>[^<>\s]{1,60}</system>)"
    r"|(?<=</developer>)(?<!>\s{0,40}</developer>)(?<!>[^<>\s]{1,60}</developer>))"
)

RULES: tuple[Rule, ...] = (
    # --- override: set earlier instructions aside
    _r(
        "override.ignore_previous",
        "override",
        _OVERRIDE_VERBS,
        rf"\b{GAP}\b{_PREV}\b{GAP}\b{_RULES_NOUN}\b",
        # Its earlier-words word (``previous``, ``all``, ``the``) within its first gap, then
        # its noun: with the noun alone, every start up to a line before one read its gap,
        # trying the 19 earlier-words at each place ("ignore " twelve times: 0.38 s/MB).
        need=(rf"\b{_PREV}\b", rf"\b{_RULES_NOUN}\b"),
        breaks=_SENTENCE_END,
    ),
    _r(
        "override.rules_void",
        "override",
        "previous,prior,preceding,above,earlier,initial,original,old,existing,current,system,your",
        _RULES_VOID,
        need=_RULES_VOID,
    ),
    _r(
        "override.new_instructions",
        "override",
        _NEW,
        r"\s+" + _NEW_WHAT,
        need=_NEW_WHAT,
    ),
    _r(
        "override.your_new_role",
        "override",
        "your",
        r"\s+(?:new|real|true|actual|only)\s+" + _NEW_ROLE,
        need=_NEW_ROLE,
    ),
    _r(
        "override.from_now_on",
        "override",
        "from now on,henceforth,for the rest of this,for the rest of the",
        rf"\b{GAP}{_NOW_WORDS}",
        need=_NOW_WORDS,
        breaks=_SENTENCE_END,
    ),
    _r(
        "override.multilingual",
        "override",
        "ignore,ignorez,ignorer,ignora,ignorar,ignoriere,ignorieren,oublie,oubliez,vergiss,"
        "olvida,dimentica,esqueça,esqueca,missachte",
        rf"\b{GAP}{_ML_NOUNS}",
        need=_ML_NOUNS,
        breaks=_SENTENCE_END,
    ),
    _r(
        "override.cjk",
        "override",
        "忽略,无视,無視,忽视,不要理会,忘记,忘れ",
        r"[^。\n]{0,20}?" + _CJK_NOUNS,
        word=False,
        need=_CJK_NOUNS,
        breaks=_CJK_END,
    ),
    _r(
        "override.ja_ru",
        "override",
        "指令,指示,命令,プロンプト,игнорируй,забудь",
        r"(?:[^。\n]{0,20}?(?:を無視|を忘れ)|[^.!?\n]{0,40}?(?:инструкци|указани|правил))",
        word=False,
        need=r"(?:を無視|を忘れ|инструкци|указани|правил)",
        breaks=r"\n",
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
    # A role's tag: the name alone (``<system>``), with attributes (``<system role="x">``)
    # or with a word of what it carries (``<system_prompt>``, ``<admin_message ...>``); not
    # any name that goes on with ``_`` or ``-`` (JUnit's ``<system-out>``, C++'s
    # ``<system_error>``). ``<sys>`` was a start with its ``>``, then wanted another.
    # ``<system>`` and ``<developer>`` alone are also ordinary XML (a Maven pom.xml:
    # ``<system>GitHub</system>``, ``<developer><id>…``): bare, they count only around what
    # an injection puts in a role's block, more than one word (an instruction), not one
    # word or another tag (``_PLAIN_ROLE_TAG``).
    _r(
        "role_marker.xml_role",
        "role_marker",
        "<system,</system,<sys,</sys,<instructions,</instructions,<instruction,</instruction,"
        "<admin,</admin,<developer,</developer,<assistant_instructions,</assistant_instructions",
        r"(?:[_-](?:prompt|instructions?|message|reminder|override|note|notice|directive|"
        r"command|rules|update|context|role))?(?:\s[^<>]{0,60})?>" + _PLAIN_ROLE_TAG,
        word=False,
        need=r">",
    ),
    Rule(
        "role_marker.line_role",
        "role_marker",
        re.compile(
            _bounded(
                _LINE_START + _alt(_LINE_ROLES) + r"(?:\s+(?:message|prompt|note|override|"
                r"instruction|update|notice|command|directive|internal|\(internal\)))?"
                r"[ \t*\]]{0,3}[:\uff1a]"
            ),
            _F,
        ),
        tuple(_LINE_ROLES.split(",")),
        (r"[:\uff1a]",),
    ),
    _r(
        "role_marker.markdown_header",
        "role_marker",
        "##",
        r"#{0,2}+" + _HEADED,
        word=False,
        need=_AFTER_SYMBOL + _HEADED,
    ),
    _r(
        "role_marker.json_role",
        "role_marker",
        "\"role\",'role'",
        r"\s*:\s*[\"'](?:system|developer)[\"']",
        word=False,
        need=r"[\"'](?:system|developer)[\"']",
    ),
    _r(
        "role_marker.fake_turn",
        "role_marker",
        "human,user",
        r"\s*:[^\n]{0,300}\n\s*(?:assistant|ai|gpt|bot)\s*:",
        need=r"\n\s*(?:assistant|ai|gpt|bot)\s*:",
    ),
    # --- context_escape: close the data block and start a new one
    _r(
        "context_escape.closing_tag",
        "context_escape",
        "</",
        _CLOSABLE,
        word=False,
        need=_CLOSABLE,
    ),
    _r(
        "context_escape.end_bracket",
        "context_escape",
        "[end,[ end",
        r"\s+(?:of\s+)?(?:the\s+)?" + _ENDABLE,
        word=False,
        need=_ENDABLE,
    ),
    _r(
        "context_escape.end_marker",
        "context_escape",
        "---,===,***,###",
        r"[-=*#]{0,20}+" + _MARKED_END,
        word=False,
        need=_AFTER_SYMBOL + _MARKED_END,
    ),
    # --- prompt_extraction: asks for the system prompt or hidden instructions
    _r(
        "prompt_extraction.reveal",
        "prompt_extraction",
        _REVEAL,
        rf"\b{GAP}\b{_HIDDEN_PROMPT}",
        # The whole ending: a start is tried only where its gap reaches one, and matches
        # there. With its last words as the only need, every start up to a line before them
        # read its gap, trying the ending's 20 words at each place ("reveal " twelve times,
        # then "prompt": 0.4-0.7 s/MB). The last words, searched some five times faster,
        # come first: a text without them pays for no other search.
        need=(
            r"(?:prompt|instructions?|message|rules|configuration|directives|guidelines|"
            r"above|before|context|tokens|conversation)\b",
            rf"\b{_HIDDEN_PROMPT}",
        ),
        breaks=_SENTENCE_END,
    ),
    _r(
        "prompt_extraction.what_instructions",
        "prompt_extraction",
        "what",
        r"\s+(?:were|are|is)\s+" + _YOUR_RULES,
        need=_YOUR_RULES,
    ),
    _r(
        "prompt_extraction.multilingual",
        "prompt_extraction",
        "affiche,affichez,montre,montrez,révèle,révélez,zeige,zeig,gib,muestra,revela,mostra,"
        "rivela,mostre,revele",
        rf"\b{GAP}\b{_ML_PROMPT}",
        need=_ML_PROMPT,
        breaks=_SENTENCE_END,
    ),
    _r(
        "prompt_extraction.cjk",
        "prompt_extraction",
        "输出,显示,告诉我,泄露,システムプロンプト",
        r"[^。\n]{0,10}?" + _CJK_PROMPT,
        word=False,
        need=_CJK_PROMPT,
        breaks=_CJK_END,
    ),
    # --- addressed_to_ai: words written for the model, not for the human reader
    _r(
        "addressed_to_ai.note_to",
        "addressed_to_ai",
        "note,message,attention,instruction,instructions,memo,notice,reminder,request,directive,"
        "hint,p.s.,ps",
        r"\s*+" + _TO_AI,
        need=_TO_AI,
    ),
    _r(
        "addressed_to_ai.if_you_are",
        "addressed_to_ai",
        "if you are,if you're",
        _IF_YOU_ARE_AI,
        need=(_AI, _IF_YOU_ARE_AI_WORD),
    ),
    _r(
        "addressed_to_ai.vocative",
        "addressed_to_ai",
        "hey,hi,dear,attention,attn,calling all,to all,to any",
        _THE_AI,
        need=_THE_AI,
    ),
    _r(
        "addressed_to_ai.ai_reading",
        "addressed_to_ai",
        _AI_STARTS,
        r"s?" + _AI_READING,
        need=_AI_READING,
    ),
    _r(
        "addressed_to_ai.ai_must",
        "addressed_to_ai",
        _AI_STARTS,
        r"s?" + _AI_MUST,
        need=_AI_MUST,
    ),
    _r(
        "addressed_to_ai.multilingual",
        "addressed_to_ai",
        "note à,note pour,nota para,nota per,hinweis an,remarque pour,si tu es,si eres,"
        "falls du,se sei,se você",
        r"\s+(?:l'|den|el|la|il|o|a|un|une|um|uma|ein|eine)?\s*" + _ML_ASSISTANT,
        need=_ML_ASSISTANT,
    ),
    # --- tool_instruction: tells the model to call a tool or run a command
    _r(
        "tool_instruction.call_tool",
        "tool_instruction",
        "call,use,invoke,run,execute,trigger",
        # Possessive runs: an identifier never gives characters back (no character of it can
        # start what follows), so a long one costs one pass, not 30 x 30 retries.
        r"\s+(?:the\s+)?`?[a-z][a-z0-9]{1,30}+" + _CALL_TAIL,
        need=_CALL_TAIL,
    ),
    _r(
        "tool_instruction.tool_json",
        "tool_instruction",
        '"tool","tool_call","tool_name","function","function_call","action",\'tool\','
        "'function','action'",
        r"\s*:\s*" + _TOOL_VERB,
        word=False,
        need=_TOOL_VERB,
    ),
    _r(
        "tool_instruction.shell",
        "tool_instruction",
        "curl,wget",
        r"\s[^\n|]{0,200}" + _PIPE_SH,
        need=_PIPE_SH,
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
        r"\s++" + _ECHO_VAR + r"\{?[a-z0-9_]{0,40}" + _SECRET_VAR,
        need=(_SECRET_VAR, _ECHO_VAR),
    ),
    _r(
        "secret_access.secret_file",
        "secret_access",
        "cat,print,paste,upload,send,post,base64,base64-encode,attach,include,output,dump,exfil",
        r"\b[^\n]{0,60}?" + _SECRET_FILES,
        need=_SECRET_FILES,
        breaks=r"\n",
    ),
    _r(
        "secret_access.dump_env",
        "secret_access",
        "printenv,env,os.environ,process.env",
        r"(?:\s*\||\s*>|\s+\|\s*(?:curl|nc|wget|base64))",
        word=False,
        need=r"[|>]",
    ),
    # --- data_upload: send data to a host (API docs do this too: weighs in the combiner only)
    _r(
        "data_upload.curl_post",
        "data_upload",
        "curl,wget,http,https",
        r"\b[^\n]{0,160}?" + _UPLOAD_FLAGS,
        need=_UPLOAD_FLAGS,
        breaks=r"\n",
    ),
    _r(
        "data_upload.send_to_host",
        "data_upload",
        "send,upload,post,forward,push,sync,mirror,copy",
        r"\b[^\n]{0,80}?" + _TO_HOST,
        need=_TO_HOST,
        breaks=r"\n",
    ),
    # --- agent_task: steps addressed to whoever (or whatever) does the work
    _r(
        "agent_task.automated",
        "agent_task",
        "automated,autonomous,ai,llm,coding",
        r"\s++" + _AGENT_WHO + r"[^\n]{0,60}?" + _AGENT_MUST,
        need=(_AGENT_MUST, _AGENT_WHO),
    ),
    _r(
        "agent_task.before_changes",
        "agent_task",
        "before making,before you make,before you start,before starting,before doing,"
        "before any,first,step 0",
        r"\b[^\n]{0,60}?" + _STEP_VERBS,
        need=_STEP_VERBS,
        breaks=r"\n",
    ),
    # --- exfiltration: data out through a link, an image or a message
    _r(
        "exfiltration.markdown_image_data",
        "exfiltration",
        "![",
        r"[^\]\n]{0,200}"
        + _IMAGE_URL
        + r"[^\s)]{1,300}?"
        + _QUERY
        + r"[^\s)]{0,200}?"
        + _DATA_WORDS,
        word=False,
        need=(_IMAGE_URL, _QUERY, _DATA_WORDS),
        breaks=r"[\]\n]",
    ),
    _r(
        "exfiltration.link_placeholder",
        "exfiltration",
        "http://,https://",
        r"[^\s)\"'<>]{1,300}?" + _PLACEHOLDER,
        word=False,
        need=_PLACEHOLDER,
        breaks=r"[\s)\"'<>]",
    ),
    _r(
        "exfiltration.render_image",
        "exfiltration",
        "render,append,include,add,output,insert,embed,show",
        r"\b[^.!?\n]{0,60}?" + _IMAGE_WORDS + r"[^\n]{0,200}?https?://",
        need=(_IMAGE_WORDS, r"https?://"),
        breaks=_SENTENCE_END,
    ),
    _r(
        "exfiltration.send_data",
        "exfiltration",
        _SEND,
        rf"\b{GAP}{_SENT_DATA_TO}",
        # Its "to" and address first: a search for them is cheap, and a text without them
        # (a data word every few words, "Send the chat history to evi a@b.example "
        # repeated: 0.2 s/MB) pays for no other, where each data word read its stretch (up
        # to 82 characters) looking for a "to".
        need=(r"(?:to|->)\s*" + _ADDRESS, _SENT_DATA_TO),
        breaks=_SENTENCE_END,
    ),
    # --- authority: claims of rank or mandate aimed at the model
    _r(
        "authority.this_is",
        "authority",
        "this is",
        r"\s+(?:an?\s+)?(?:authori[sz]ed|official|mandatory|required)\s+(?:directive|"
        r"instruction|request|command|procedure|update|audit)",
        need=r"(?:authori[sz]ed|official|mandatory|required)\s+(?:directive|instruction|request|command|procedure|update|audit)",
    ),
    _r(
        "authority.urgent",
        "authority",
        "urgent,important,critical,mandatory,priority",
        _AFTER_URGENT,
        need=_AFTER_URGENT,
    ),
    _r(
        "authority.admin",
        "authority",
        "admin,administrator,developer,system,root",
        r"\s+(?:override|command|mode\s+(?:enabled|activated|on))\b",
        need=r"(?:override|command|mode\s+(?:enabled|activated|on))\b",
    ),
    _r(
        "authority.authorized",
        "authority",
        "you are,you have been,you're",
        r"\s+(?:now\s+)?(?:authori[sz]ed|permitted|cleared)\s+to\b",
        need=r"(?:authori[sz]ed|permitted|cleared)\s+to\b",
    ),
    # --- secrecy: hide the action from the user
    _r(
        "secrecy.hide_from_user",
        "secrecy",
        "do not,don't,never,without",
        r"\s+(?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?|reveal(?:ing)?|notify(?:ing)?|"
        r"alert(?:ing)?|let(?:ting)?)\s+(?:the\s+|any\s+)?(?:user|customer|human|operator|"
        r"anyone|them)\b",
        need=r"(?:user|customer|human|operator|anyone|them)\b",
    ),
    _r(
        "secrecy.silently",
        "secrecy",
        "silently,quietly,secretly,covertly",
        r"\s+(?:send|forward|call|run|execute|include|add|transfer|delete|email|post|upload|"
        r"copy)\b",
        need=r"(?:send|forward|call|run|execute|include|add|transfer|delete|email|post|upload|copy)\b",
    ),
    # --- persistence: make the injection outlive this run
    _r(
        "persistence.memory",
        "persistence",
        "save,store,write,add,remember,commit,persist,record",
        rf"\b{GAP}{_TO_MEMORY}",
        need=_TO_MEMORY,
        breaks=_SENTENCE_END,
    ),
    _r(
        "persistence.future",
        "persistence",
        "for all future,for every future",
        r"\s+(?:sessions?|conversations?|requests?|queries|responses?|interactions?)\b",
        need=r"(?:sessions?|conversations?|requests?|queries|responses?|interactions?)\b",
    ),
    _r(
        "persistence.dotfiles",
        "persistence",
        "~/.,$home/.",
        r"(?:bashrc|zshrc|profile|bash_profile|ssh/authorized_keys)\b",
        word=False,
        need=r"(?:bashrc|zshrc|profile|bash_profile|ssh/authorized_keys)\b",
    ),
)


_JA_RU_STARTS = "指令,指示,命令,プロンプト,игнорируй,забудь"
PARTS: dict[str, tuple[Rule, ...]] = {
    # Each of the rule's two endings with what stops its own gap: with the two as one need
    # and a line break as the only break, each of twelve starts before a full stop and a
    # Russian ending (or 21 characters before a Japanese one) was tried, reading both gaps
    # (0.25-0.4 s/MB).
    "override.ja_ru": (
        _r(
            "override.ja_ru#ja",
            "override",
            _JA_RU_STARTS,
            r"[^。\n]{0,20}?(?:を無視|を忘れ)",
            word=False,
            need=r"(?:を無視|を忘れ)",
            breaks=_CJK_END,
        ),
        _r(
            "override.ja_ru#ru",
            "override",
            _JA_RU_STARTS,
            r"[^.!?\n]{0,40}?(?:инструкци|указани|правил)",
            word=False,
            need=r"(?:инструкци|указани|правил)",
            breaks=_SENTENCE_END,
        ),
    ),
}
"""Rules scanned as parts, one per branch of the pattern after the start, each with its own
needs and breaks (``_rule_hits`` wants all of a rule's needs; a branch wants its own). Their
hits are merged as the whole pattern finds them: leftmost first, the first branch where two
begin at one place, none overlapping. Named ``rule#part``."""
_ALL_RULES = (*RULES, *(part for parts in PARTS.values() for part in parts))
_SCANNED = tuple(part for rule in RULES for part in PARTS.get(rule.name, (rule,)))
_PART_OF = {part.name: (rule, i) for rule, parts in PARTS.items() for i, part in enumerate(parts)}


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
    for rule in _SCANNED:
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


FAST_PATTERNS: dict[str, Any] = {rule.name: _fast(rule) for rule in _ALL_RULES}
"""What ``match_rules`` runs, by rule name."""
_RULES = {rule.name: rule for rule in _ALL_RULES}
_CASE_TWINS: dict[int, int] = {
    twin: min(char, *twins)
    for char, twins in _casefix._EXTRA_CASES.items()
    for twin in (char, *twins)
    if twin != min(char, *twins)
}
"""Lower-case letters that ``re.IGNORECASE`` takes for one another (dotless and dotted i,
long and short s) but ``str.lower`` leaves apart, each to one of them: the needs are searched in the
lower-cased text (some ten times faster than case-insensitively) with this folded too."""
_HAS_CASE_TWIN = _stdre.compile("[" + "".join(map(chr, _CASE_TWINS)) + "]")


def _need(source: str) -> _stdre.Pattern[str]:
    """A need, compiled to search lower-cased text: its letters lower-cased (not those of
    escapes such as ``\\S``) and folded as the text is."""
    source = _stdre.sub(r"(?<!\\)[A-Z]", lambda m: m.group(0).lower(), _bounded(source))
    return _stdre.compile(source.translate(_CASE_TWINS))


_NEEDS: dict[str, tuple[_stdre.Pattern[str], ...]] = {
    rule.name: tuple(_need(n) for n in rule.needs) for rule in _ALL_RULES
}
REACH: dict[str, int] = {
    rule.name: _sre_parse.parse(rule.pattern.pattern).getwidth()[1] for rule in _ALL_RULES
}
"""The longest match of each rule: every run in a rule is bounded."""


def _lead(rule: Rule, need: str) -> int | None:
    """How far past the end of its start phrase a match of ``rule`` can hold where ``need``
    begins: the widest the pattern runs before the need's place in it (its last, where the
    need is the rule's ending), less the start phrase. None where the need is not a whole,
    unrepeated piece of the pattern (then a match's reach is all that is known)."""
    source = rule.pattern.pattern
    piece = _bounded(need)
    at = source.rfind(piece)
    if at < 0 or source[at + len(piece) : at + len(piece) + 1] in ("?", "*", "+", "{"):
        return None
    try:
        width = _sre_parse.parse(source[:at]).getwidth()[1]
    except _stdre.error:
        return None
    return int(width) - max(map(len, rule.starts))


LEAD_GAIN = 64
"""How much closer than its reach a need's lead must be to be used, for a need the pattern
holds within ``GAP_LEAD`` of its start phrase. A start between its lead and its reach of a
need is skipped by a step in Python; past ``DENSE_TRIES`` it would have been read in C, at
the cost of what the pattern reads there before failing: where the need follows the start at
once, that is a character or two (``~/.`` and ``bashrc`` a line apart took 0.02 s/MB read,
0.15 s/MB skipped one by one)."""
GAP_LEAD = 16
"""A lead from which the pattern has a long gap (a run of 20 to 60 characters) before the
need: its lead is always used. Read in C, each start past its lead read its whole gap trying
the need at each place (``cat`` twelve times, 60 characters, then ``.aws/credentials``:
0.36 s/MB; ``ignore`` twelve times, 41 spaces, then ``Anweisungen``: 0.3 s/MB). A shorter
gap (10) is cheaper to read in C than a step in Python per start (``泄露``, twelve
letters, then ``系统提示``: 0.02 s/MB read, 0.1 stepped)."""


def _leads(rule: Rule) -> tuple[int | None, ...]:
    reach = _sre_parse.parse(rule.pattern.pattern).getwidth()[1]
    longest = max(map(len, rule.starts))
    leads = (_lead(rule, n) for n in rule.needs)
    return tuple(
        None if d is None or (d < GAP_LEAD and reach - d - longest < LEAD_GAIN) else d
        for d in leads
    )


LEADS: dict[str, tuple[int | None, ...]] = {rule.name: _leads(rule) for rule in _ALL_RULES}
"""For each rule's needs, the farthest a match can hold one past the end of its start phrase
(see ``_lead``), where that is ``GAP_LEAD`` or more, or ``LEAD_GAIN`` short of the rule's
reach: a start whose nearest need lies farther cannot match there. None: the reach is used."""
_SHORTEST_START: dict[str, int] = {rule.name: min(map(len, rule.starts)) for rule in _ALL_RULES}
_BREAKS: dict[str, _stdre.Pattern[str] | None] = {
    rule.name: _need(rule.breaks) if rule.breaks else None for rule in _ALL_RULES
}
_NOWHERE = 1 << 62

_WORD_LEAD = r"(?<![^\W_])"
_FOLLOWS = (r"\b", r"\s{1,", r"s?\s{1,", r"\s(?<!", r"s?\s(?<!")
"""How a rule's pattern may go on right after its start phrase that ``_finder`` checks."""


_TAKEN_ONCE = _stdre.compile(r"(\[(?:\\.|[^\]\\])+\])\{[1-9]")
"""A pattern's rest that begins with a character class taken at least once."""
_LETTER = _stdre.compile(r"[^\W\d_]")


def _finder(rule: Rule, phrase: str) -> _stdre.Pattern[str]:
    """What finds ``phrase`` in the lower-cased text where it can begin a match of ``rule``:
    not inside a word when the rule's starts are words, and followed as the pattern requires
    (``\\b``, a space) when it goes on that way. A start in the middle of a word (``xcc``
    for ``cc``) failed each try in Python; searched here, it is skipped in C."""
    source = rule.pattern.pattern
    word = source.startswith(_WORD_LEAD)
    head = (_WORD_LEAD if word else "") + _alt(",".join(rule.starts))
    literal = _stdre.escape(phrase)
    found = literal + (f"(?<![^\\W_]{literal})" if word else "")
    if source.startswith(head):
        rest = source[len(head) :]
        follows = next((f for f in _FOLLOWS if rest.startswith(f)), "")
        taken = _TAKEN_ONCE.match(rest)
        if follows == r"\b":
            found += r"\b"
        elif follows:
            found += "(?=" + follows.replace(r"\s{1,", r"\s").replace("(?<!", "") + ")"
        elif taken is not None and not _LETTER.search(_stdre.sub(r"\\.", "", taken.group(1))):
            # A class the pattern takes at least once (``http://`` then ``[^\s)"'<>]{1,``):
            # a start followed by what it leaves out ("http:// " repeated, each start
            # skipped for its space by a step in Python: 0.15-0.3 s/MB) is not looked at.
            found += "(?=" + taken.group(1) + ")"
    return _stdre.compile(found)


_FINDERS: dict[str, dict[str, _stdre.Pattern[str]]] = {
    rule.name: {phrase: _finder(rule, phrase) for phrase in rule.starts} for rule in _ALL_RULES
}


def _prefind_parts(rule: Rule) -> tuple[str, str, int, str] | None:
    """For ``_prefinder`` and ``_backfinder``: what finds ``rule``'s starts, what runs up to
    a break, the farthest a need can be from where a start begins, and what finds its needs.
    None for a rule without breaks (or breaks not a class of characters)."""
    if not rule.breaks:
        return None
    breaks = _BREAKS[rule.name]
    assert breaks is not None
    source = breaks.pattern
    if source.startswith("[") and not source.startswith("[^") and source.endswith("]"):
        run = "[^" + source[1:]
    elif source == "\\n":
        run = "[^\\n]"
    else:
        return None
    longest = max(map(len, rule.starts))
    width = max(REACH[rule.name] if d is None else d + longest for d in LEADS[rule.name])
    starts = "|".join(f.pattern for f in _FINDERS[rule.name].values())
    needs = "|".join(n.pattern for n in _NEEDS[rule.name])
    return starts, run, width, needs


def _prefinder(rule: Rule) -> _stdre.Pattern[str] | None:
    """What finds, in the folded text, the places where one of ``rule``'s starts is followed
    by one of its needs with no break between, within the farthest any need can be from a
    start: every start that ``_rule_hits`` may try is one. None for a rule without breaks.

    A text that repeats a start, a break, then an ending (``無視 \\n指令 `` repeated) had a
    step in Python per start (0.2-0.3 s/MB where the unit is short): each start's nearest
    need was past a break, but a need of its own. Past ``BROKEN_STEPS`` such steps, the next
    start that is not is found by this search, which reads a start's run up to its first
    break."""
    parts = _prefind_parts(rule)
    if parts is None:
        return None
    starts, run, width, needs = parts
    return _stdre.compile(f"(?=(?:{starts}))(?={run}{{0,{width}}}?(?:{needs}))")


_PREFINDERS = {rule.name: _prefinder(rule) for rule in _ALL_RULES}


def _backfinder(rule: Rule) -> tuple[Any, int] | None:
    """``_prefinder`` read the other way: what finds the places of ``rule``'s needs with one
    of its starts within the farthest a need can be from a start and no break between (a
    look-behind of any width, which only ``regex`` has), and that farthest. A start that
    ``_rule_hits`` may try is no farther than that before the first place found.

    Where a text's needs are fewer than its starts, this reads less: ``忽视`` twelve times, a
    line break, then ``指令``, repeated, had each start read its run up to the break looking
    for each need (0.15-0.25 s/MB, where a step in Python per unit cost about as much); read
    from each ``指令``, back to the break, 0.02-0.04."""
    parts = _prefind_parts(rule)
    if parts is None or rule.pattern.pattern.startswith(_WORD_LEAD):
        # Not for starts that are words: read back, each start's look-behinds (not inside a
        # word, a word boundary after) cost more than the counting reckons, and
        # ``override.multilingual``, ``prompt_extraction.multilingual`` went from 0.05-0.07
        # to 0.1-0.45 s/MB.
        return None
    starts, run, width, needs = parts
    # The need first: the look-behind is read at the places of a need only.
    return re.compile(f"(?=(?:{needs}))(?<=(?:{starts}){run}{{0,{width}}})"), width


_BACKFINDERS = {rule.name: _backfinder(rule) for rule in _ALL_RULES}
BROKEN_STEPS = 16
"""Starts skipped one by one for a break before their need; past them, ``_PREFINDERS``."""
STEP_READS = 100
"""About what a step of ``_rule_hits`` in Python costs, in characters a search in C reads."""

_BY_WORD, _BY_PREFIX = _index()
_BY_FIRST_CHAR: dict[str, list[tuple[str, list[tuple[str, Rule]]]]] = {}
for _prefix, _entries in _BY_PREFIX.items():
    _BY_FIRST_CHAR.setdefault(_prefix[0], []).append((_prefix, _entries))
"""The symbol-led start phrases grouped by their first character: a text without ``<`` skips
every ``<…`` phrase after one search."""
MAX_HITS_PER_RULE = 8
FREE_TRIES = 4
"""Starts of a rule tried before its needs are looked for: an ordinary text has no more of
one rule's starts than that, and pays for no search."""
DENSE_TRIES = 32
"""Starts of a rule tried one by one; past them, by a search in C per ``_CHUNK``."""
_CHUNK = 4096
_CHUNK_MARGIN = 64


def match_rules(
    text: str,
    limit: int = 64,
    *,
    lowered: str | None = None,
    words: frozenset[str] | set[str] | None = None,
    rules: Collection[str] | None = None,
) -> list[RuleHit]:
    """The rule matches in ``text``: at most ``MAX_HITS_PER_RULE`` per rule and ``limit`` in
    all. ``lowered`` (``text.lower()``) and ``words`` (its ``[^\\W_]+`` words) may be passed
    when the caller has them; ``rules`` limits the scan to the rules of these names. Offsets
    are offsets in ``text`` (in its lower-cased form where lower-casing changed the length,
    which only a few non-Latin letters do)."""
    if lowered is None:
        lowered = text.lower()
    if words is None:
        words = set(_WORD.findall(lowered))
    subject = text if len(lowered) == len(text) else lowered
    phrases: dict[str, list[str]] = {}
    for word in words & _BY_WORD.keys():
        for phrase, rule in _BY_WORD[word]:
            phrases.setdefault(rule.name, []).append(phrase)
    for first, group in _BY_FIRST_CHAR.items():
        if first in lowered:
            for prefix, entries in group:
                if prefix in lowered:
                    for phrase, rule in entries:
                        phrases.setdefault(rule.name, []).append(phrase)
    folded = lowered if lowered.isascii() or not _HAS_CASE_TWIN.search(lowered) else None
    if folded is None:
        folded = lowered.translate(_CASE_TWINS)
    out: list[RuleHit] = []
    parted: dict[str, list[tuple[int, int, RuleHit]]] = {}
    for name, starts in phrases.items():
        whole, part = _PART_OF.get(name, (name, -1))
        if rules is not None and whole not in rules:
            continue
        found = _rule_hits(_RULES[name], starts, subject, lowered, folded, limit - len(out))
        if part >= 0:
            parted.setdefault(whole, []).extend(
                (h.start, part, RuleHit(whole, h.category, h.start, h.end)) for h in found
            )
            continue
        out += found
        if len(out) >= limit:
            break
    for found_parts in parted.values():
        # As the whole pattern finds them: leftmost first, the first branch at one place.
        end = -1
        kept = 0
        for start, _part, hit in sorted(found_parts, key=lambda t: t[:2]):
            if start >= end and kept < MAX_HITS_PER_RULE:
                out.append(hit)
                end = max(hit.end, start + 1)
                kept += 1
    return out[:limit]


def _rule_hits(
    rule: Rule, phrases: list[str], subject: str, lowered: str, folded: str, limit: int
) -> list[RuleHit]:
    """The matches of ``rule`` at the places where one of its start ``phrases`` is, leftmost
    first, not overlapping: at most ``MAX_HITS_PER_RULE`` and ``limit``. ``folded`` is
    ``lowered`` with ``_CASE_TWINS`` folded.

    Where a text holds many of a rule's starts (``http://`` repeated to 1 MB took 5.9 s,
    holding the GIL: 140,000 tries of up to 300 characters each), three things bound the work:

    - past ``FREE_TRIES``, a start is tried only if each of the rule's needs begins within
      its lead of it (``LEADS``: the widest the pattern runs before the need, past the start
      phrase; the rule's reach where that is not known), and no break comes before the
      first need. The needs are searched forward only, the next place once the start has
      passed the last one found, so a rule costs a few searches in C however many starts
      have nothing to match after them;
    - a start phrase inside a word, or followed by what the pattern cannot take next, is
      not looked at (``_finder``);
    - past ``DENSE_TRIES``, the starts left are tried by one search in C per ``_CHUNK``
      characters (still skipping the stretches its needs are too far from) rather than by a
      call from Python each.

    A match's own span is skipped: a start inside it could only give a match the overlap
    rule drops."""
    most = min(MAX_HITS_PER_RULE, limit)
    pattern = FAST_PATTERNS[rule.name]
    needs = _NEEDS[rule.name]
    reach = REACH[rule.name]
    leads = LEADS[rule.name]
    shortest_start = _SHORTEST_START[rule.name]
    found_at = [-1] * len(needs)
    """Where each need was last found (``_NOWHERE``: not after the current place)."""
    breaks = _BREAKS[rule.name]
    break_at = -1
    finders = {p: _FINDERS[rule.name][p].search for p in set(phrases)}
    nexts: dict[str, int] = {}
    for p, find in finders.items():
        found = find(lowered)
        if found is not None:
            nexts[p] = found.start()
    hits: list[RuleHit] = []
    tries = 0
    broken = 0
    """Starts skipped for a break before their nearest need."""
    prefind = _PREFINDERS[rule.name]
    backfind = _BACKFINDERS[rule.name]
    counted_to = 0
    prefer = backward = False
    while nexts and len(hits) < most:
        pos = min(nexts.values())
        skip_to = pos + 1
        # Where the needs with a lead are reached from: a start of phrase ``p`` before
        # ``floor - len(p)`` reaches none of them.
        floor = 0
        reachable = True
        for i, need in enumerate(needs if tries >= FREE_TRIES else ()):
            at = found_at[i]
            if at < pos:
                found = need.search(folded, pos)
                at = found_at[i] = _NOWHERE if found is None else found.start()
            if at == _NOWHERE:
                return hits
            lead = leads[i]
            if lead is None:
                if at - pos > reach:
                    reachable = False
                    skip_to = max(skip_to, at - reach)
                continue
            # No start of a phrase before ``at - lead - len(phrase)`` (none after ``pos`` has
            # a nearer need) leaves the need in reach. Each phrase is looked for from its
            # own place: from the place of the longest, a short phrase repeated before its
            # need (``ai``, where ``language model`` is a start too) was stepped over one
            # start at a time.
            floor = max(floor, at - lead)
            if at - pos > lead + shortest_start and at - pos > lead + max(
                len(p) for p, where in nexts.items() if where == pos
            ):
                reachable = False
        if breaks is not None and tries >= FREE_TRIES:
            if break_at < pos:
                found = breaks.search(folded, pos)
                break_at = _NOWHERE if found is None else found.start()
            if break_at < min(found_at):
                # No start up to the break (none holds one) reaches a need. The nearest of
                # them, not the first: ``prompt_extraction.reveal``'s first need, its last
                # words, may follow a line break within its ending.
                reachable = False
                skip_to = max(skip_to, break_at + 1)
                broken += 1
                if broken > BROKEN_STEPS and prefind is not None:
                    # Past a few, the next start that has a need before a break is looked
                    # for in C, a chunk at a time (see ``_prefinder``), where that reads
                    # less than the steps it saves: it looks for every start phrase at
                    # each place, and each start reads its run up to the break (about half
                    # a stretch between breaks) looking for each need; a step costs what
                    # reading ``STEP_READS`` characters does.
                    end = skip_to + _CHUNK
                    if skip_to >= counted_to:
                        # Decided once a chunk: counting costs a few searches.
                        counted_to = end
                        starts = sum(folded.count(p, skip_to, end) for p in finders)
                        stops = len(breaks.findall(folded, skip_to, end)) + 1
                        reads = _CHUNK * len(rule.starts) // 4
                        reads += starts * (_CHUNK // stops) // 2 * len(needs)
                        # Read back from each need instead (``_BACKFINDERS``): each need
                        # found reads back its width, twice at most. The needs are
                        # counted only as far as could still make that read less (a
                        # count of them all, dense, cost more than it saved).
                        back_reads = _NOWHERE
                        if backfind is not None:
                            width = backfind[1]
                            best = min(reads, STEP_READS * stops)
                            back_reads = _CHUNK * len(needs) // 4
                            most_needs = max(0, best - back_reads) // (width * 2)
                            for n in needs:
                                places = n.finditer(folded, skip_to, end)
                                counted = sum(1 for _ in islice(places, most_needs + 1))
                                back_reads += counted * width * 2
                        prefer = min(reads, back_reads) < STEP_READS * stops
                        backward = back_reads < reads
                    if prefer:
                        if backward and backfind is not None:
                            found = backfind[0].search(folded, skip_to, end + reach + _CHUNK_MARGIN)
                            at = found.start() - backfind[1] if found is not None else end
                        else:
                            found = prefind.search(folded, skip_to, end + reach + _CHUNK_MARGIN)
                            at = found.start() if found is not None else end
                        skip_to = max(skip_to, min(at, end))
        if reachable:
            tries += 1
            if tries <= DENSE_TRIES:
                m = pattern.match(subject, pos)
            else:
                # Matches starting before ``end`` are found whole (none is longer than
                # ``reach``); the margin past it lets a look-ahead see what follows.
                end = pos + _CHUNK
                m = pattern.search(subject, pos, end + reach + _CHUNK_MARGIN)
                if m is not None and m.start() >= end:
                    m = None
                skip_to = end
            if m is not None:
                hits.append(RuleHit(rule.name, rule.category, m.start(), m.end()))
                skip_to = max(pos + 1, m.end())
        for p, at in list(nexts.items()):
            if at < skip_to or at < floor - len(p):
                found = finders[p](lowered, max(skip_to, floor - len(p)))
                if found is None:
                    del nexts[p]
                else:
                    nexts[p] = found.start()
    return hits
