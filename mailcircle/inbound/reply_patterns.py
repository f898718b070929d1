"""What the lines a mail client adds to a reply look like, in many languages.

Every test here reads at most ``READ`` characters: an attribution ("On ... wrote:"), a
header of an embedded mail or a phone tagline is never longer, so a longer line is text
(or a quote) without any pattern looking at it. That, and patterns anchored at the start
of the line, keeps reading a reply linear in its length.
"""

from __future__ import annotations

import re

READ = 300  # the longest line (or wrapped attribution, joined) a pattern reads

SIGNATURE_SEPARATOR = re.compile(r"^--[ \t]?$")
DELIMITER = re.compile(r"^[ \t]*[-_,=+~#*ᐧ—]+[ \t]*$")
QUOTE = re.compile(r"^[ \t]*[A-Za-z]{0,10}>")  # "> ", and Usenet's "Ann> "
FENCE = re.compile(r"^[ \t]*(```|~~~)")
LEADING_MARKS = re.compile(r"^[\s>-]*")
_UNQUOTE_ONCE = re.compile(r"^\s*>\s?")
_MARKDOWN_LINK = re.compile(r"\[([^\]]{1,200})\]\([^)]{0,300}\)")

# Whole-line attributions ("On <date>, <someone> wrote:" and kin), read after the marks
# a client puts around them (" <>*-" before; " .:>*-" after) are taken off.
_ATTRIBUTIONS = [
    r"(on|at)\s.+\s(wrote|writes|says|said|sent)",
    r"in message\s.+\swrites",
    r"le\s.+\s(a\s+écrit|nous\sa\sdit)",
    r"am\s.+\s(geschrieben|schrieb(en\ssie)?\b.*)",
    r"il\s.+\sha\sscritto",
    r"(w\sdniu|dnia|dňa)\s.+\snapisał(\(a\)|a)?",
    r"em\s.+\sescreveu",
    r"el\s.+\s(escribió|va\sescriure)",
    r"op\s.+\s(het\svolgende\sgeschreven|schreef.*)",
    r"den\s.+\sskrev\s.+",
    r"søn\.\s.+\sskrev\s.+",
    r"vào\s.+\sđã\sviết",
    r"在.+写道",
    r".+\bwrote\b\s+\bon\b.+",  # Ann <ann@x> wrote on Tue, ...
    r".+\bschrieb\b\s+\bam\b.+",
    r".+\svia\s.+\s(wrote|schrieb)",
    r".+\b[\w.+-]+@[\w.-]+\.\w{2,}\b.+wrote",
    r"\d{4}.{1,80}\s?<[^@<>]+@[^@<>.]+\.[^@<>]+>",  # 2015-10-18 0:17 GMT+03:00 Ann <a@x>:
    r"20\d\d-\d\d-\d\d \d\d:\d\d GMT\+\d\d:\d\d [\w \t]+",
    r".*\d{4}.{1,80}(пользователь).{0,80}написал",
    r".*\d{4}.{1,80}(napisał\(a\)|пише)",
    r"posted by .+ on \d{2}/\d{2}/\d{4}",
    r"(begin forwarded message|début du message transféré|début du message réexpédié"
    r"|anfang der weitergeleiteten nachricht|inicio del mensaje reenviado|início da mensagem"
    r" reencaminhada|inizio messaggio inoltrato|begin doorgestuurd bericht|vidarebefordrat"
    r" mejl|videresendt melding|videresendt meddelelse)",
]
_ATTRIBUTION = re.compile(rf"(?:{'|'.join(_ATTRIBUTIONS)})[ \t.:：>*-]*", re.IGNORECASE)

# The verbs that end an attribution ("... wrote:", "... schrieb:", "... 写道："), and the
# ones that stand inside it ("Ann <a@x> kirjoitti ma 30.11.2026 klo 9.14:").
_FINAL_VERBS = (
    "wrote", "writes", "said", "sent", "schrieb", "geschrieben", "schreef", "a écrit",
    "escribió", "escreveu", "ha scritto", "skrev", "napisał", "napisała", "napisał(a)",
    "napsal", "napsala", "napsal(a)", "kirjoitti", "va escriure", "пишет", "написал",
    "написала", "написал(а)", "пише", "написав", "написала", "đã viết", "작성", "님이 작성",
    "写道", "寫道", "書きました", "さんは書きました", "yazdı", "έγραψε", "írta",
    "pisze", "ha escrit", "a scris", "napísal", "napísala", "napísal(a)", "napisao",
    "napisala", "napisal", "napisal(a)", "napisao je", "napisala je", "napisao/la",
    "написао/ла", "написа", "rašė", "rakstīja", "kirjutas", "menulis", "skrifaði",
    "쓴 글", "작성하였습니다", "nadesłał", "เขียนว่า", "ने लिखा", "כתב", "كتب", "نوشت",
)  # fmt: skip
_INNER_VERBS = (
    " skrev ", " kirjoitti ", " schrieb ", " schreef ", " ezt írta ", " napsal ", " a scris ",
)  # fmt: skip
_EMAIL_IN_BRACKETS = re.compile(r"[<(\[][^<>()\[\]\s@]{1,80}@[^<>()\[\]\s@]{1,120}[>)\]]")
_TIME_OR_DATE = re.compile(r"\d{1,2}[:.]\d\d|\d{1,4}[./-]\d{1,2}[./-]\d{2,4}|\d{4}")
_TIME = re.compile(r"\d{1,2}[:.]\d\d")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{2,4}")

# "-----Original Message-----" and its kin: the words between the rules.
_SEPARATORS = frozenset(
    """original message|forwarded message|reply message|message transféré|message d'origine
    |message original|ursprüngliche nachricht|original-nachricht|originalnachricht
    |weitergeleitete nachricht|antwort nachricht|antwortnachricht|mensaje original
    |mensaje reenviado|mensagem original|mensagem encaminhada|messaggio originale
    |messaggio inoltrato|oorspronkelijk bericht|origineel bericht|doorgestuurd bericht
    |oprindelig meddelelse|videresendt meddelelse|opprinnelig melding|videresendt melding
    |ursprungligt meddelande|vidarebefordrat meddelande|alkuperäinen viesti|välitetty viesti
    |wiadomość oryginalna|oryginalna wiadomość|przekazana wiadomość|исходное сообщение
    |пересылаемое сообщение|оригинальное сообщение|оригінальне повідомлення
    |початкове повідомлення|пересланий лист|původní zpráva|přeposlaná zpráva|pôvodná správa
    |eredeti üzenet|továbbított üzenet|eredeti levél|missatge original|missatge reenviat
    |orijinal mesaj|原始邮件|原始郵件|转发的邮件|原邮件|元のメッセージ|転送されたメッセージ
    |mesaj original|mesaj redirecționat|originalna poruka|proslijeđena poruka|αρχικό μήνυμα
    |προωθημένο μήνυμα|pesan asli|pesan terusan|originalus laiškas|algne kiri
    |sākotnējā ziņa|оригинално съобщение|препратено съобщение|переслане повідомлення
    |הודעה מקורית|הודעה שהועברה|الرسالة الأصلية|الرسالة المُعاد توجيهها|ข้อความต้นฉบับ
    |원본 메시지|전달된 메시지|thư gốc|tin nhắn gốc|thư chuyển tiếp""".replace("\n", "")
    .replace("    ", "")
    .split("|")
)

_START = re.compile(
    r"(on|le|am|il|dnia|w dniu|em|el|op|den|at|vào|dne)\s|.*\d{4}|.*<$|.*@", re.IGNORECASE
)
# Where an attribution starts after the reviewer's own words on the same line.
_MIDLINE = re.compile(r"(?<=\S)\s{1,4}(?=(?:On|Le|Am|El|Em|Il|Op|Den|W dniu|Dnia|Vào)\s)")

_HEADER_NAMES_WITH_DATE = (
    "sendt|sent|date|le|gesendet|enviada em|enviado|fecha|data|datum|skickat|发送时间"
    "|envoyé|envoyé le|inviato|verzonden|verstuurd|wysłano|data wysłania|lähetetty"
    "|päivämäärä|отправлено|дата|надіслано|odesláno|elküldve|dátum|送信日時|日付"
    "|odoslané|trimis|poslano|poslato|στάλθηκε|ημερομηνία|dikirim|tanggal|nosūtīts"
    "|išsiųsta|saadetud|изпратено|נשלח|تم الإرسال|ส่ง"
    "|보낸 날짜|날짜|發送時間|寄件日期|đã gửi|ngày|enviat|gönderildi|tarih|时间"
)
_HEADER_NAMES = (
    "fra|til|emne|from|to|cc|reply-to|subject|de|expéditeur|à|destinataire|répondre à|objet"
    "|von|an|betreff|para|assunto|asunto|da|risposta|a|oggetto|van|beantwoorden - aan|aan"
    "|onderwerp|från|till|ämne|发件人|收件人|主题|od|do|temat|lähettäjä|vastaanottaja|aihe"
    "|от|кому|тема|від|odesílatel|komu|předmět|feladó|címzett|tárgy|差出人|宛先|件名"
    "|보낸 사람|받는 사람|제목|寄件者|收件者|主旨|từ|đến|chủ đề|per a|assumpte|kimden|kime|konu"
    "|predmet|de la|către|subiect|šalje|prima|από|προς|θέμα|dari|kepada|subjek|saatja"
    "|adressaat|teema|nuo|tēma|מאת|אל|נושא|من|إلى|الموضوع|จาก|ถึง|เรื่อง"
)
HEADER = re.compile(
    rf"^[ \t*]*(?:(?:{_HEADER_NAMES_WITH_DATE})[ \t*]*[:：].*\d"
    rf"|(?:{_HEADER_NAMES})[ \t*]*[:：].*\w)",
    re.IGNORECASE,
)

_FROM_NAMES = (
    "from|von|de|da|van|fra|från|od|от|від|feladó|lähettäjä|差出人|发件人|寄件者|보낸 사람|từ"
    "|kimden|expéditeur|odesílatel|de la|šalje|από|dari|saatja|nuo|מאת|من|จาก"
)
FROM_HEADER = re.compile(rf"^[ \t*]*(?:{_FROM_NAMES})[ \t*]*[:：].*@", re.IGNORECASE)
_FROM_NAME = re.compile(rf"^[ \t*]*(?:{_FROM_NAMES})[ \t*]*[:：]", re.IGNORECASE)
DATE_HEADER = re.compile(rf"^[ \t*]*(?:{_HEADER_NAMES_WITH_DATE})[ \t*]*[:：].*\d", re.IGNORECASE)


def from_and_date(first: str, second: str) -> bool:
    """Whether two header lines are a date and an address (From:, To: ...), in either
    order: the shortest header block a client writes above the mail it quotes."""
    first, second = first.strip(), second.strip()
    if len(first) > READ or len(second) > READ:
        return False

    def addressed(line: str) -> bool:
        return "@" in line and bool(FROM_HEADER.match(line) or HEADER.match(line))

    return bool(
        (addressed(first) and DATE_HEADER.match(second))
        or (DATE_HEADER.match(first) and addressed(second))
        or (_FROM_NAME.match(first) and HEADER.match(second))
    )


# Taglines a phone or a mail program adds, each a whole line (a link after it allowed).
_DEVICE = r"[\w'’+®™-]+(?: [\w'’+.®™-]+){0,5}"
_EXCUSE = r"(?:[.,;:]? {0,3}(?:please )?(?:excuse|pardon|forgive|sorry)[\w ,'’-]{0,60})?"
_TAGLINES = [
    rf"(?:sent|envoyé|enviado|inviato|gesendet) (?:from|via|with|by|using|von|mit)"
    rf" (?:my |an? |meinem )?{_DEVICE}"
    rf"{_EXCUSE}",
    r"[\w-]+ from mobile",
    r"from my [\w-]+(?: [\w-]+){0,3}",
    r"get outlook for [\w-]+",
    r"envoyé (?:depuis|de|avec) (?:mon |ma |yahoo mail)?[\w' -]{1,40}",
    r"von meinem [\w' -]{1,40} gesendet",
    r"diese nachricht wurde von [\w' -]{1,80} gesendet",
    r"inviato da [\w' -]{1,40}",
    r"sendt fra min [\w' -]{1,40}",
    r"enviado (?:do|desde) (?:meu|mi|o|el) [\w' -]{1,40}",
    r"verzonden (?:met|vanaf) [\w' -]{1,40}",
    r"verstuurd (?:vanaf|met) (?:mijn )?[\w' -]{1,40}",
    r"(?:skickat )?från min [\w' -]{1,40}",
    r"wysłan[eo] z [\w' -]{1,40}",
    r"odesláno z (?:mého )?[\w' -]{1,40}",
    r"(?:sendt fra|hent) outlook (?:til|for) [\w-]+",
    r"sendt fra outlook",
    r"내 [\w ]{1,20}에서 보냄",
    r"从我的 ?[\w ]{1,20} ?发送",
    r"отправлено с [\w' -]{1,40}",
    r"從我的 ?[\w ]{1,20} ?傳送",
    r"发自我的 ?[\w ]{1,20}",
    r"[\w ]{1,20}から送信",
]
_TAGLINE = re.compile(rf"(?:{'|'.join(_TAGLINES)})", re.IGNORECASE)
_LINK_TAIL = re.compile(r"<?https?://[^<>\s]{0,300}>?$")


def is_tagline(stripped: str) -> bool:
    """Whether a whole line (at most READ characters, stripped) is a known tagline."""
    text = _MARKDOWN_LINK.sub(r"\1", stripped).strip("(<[)>] ")
    text = _LINK_TAIL.sub("", text).rstrip(" .!")
    return bool(_TAGLINE.fullmatch(text))


def _unmarked(text: str) -> str:
    """A line without the marks clients put around attributions (" <>*-" before)."""
    return text.lstrip(" \t<>*-")


def is_attribution(line: str) -> bool:
    """Whether a line (or lines joined) opens an embedded mail: an attribution or a
    separator such as "-----Original Message-----", in any of the languages above."""
    stripped = line.replace("\xa0", " ").strip()
    if len(stripped) > READ or not stripped:
        return False
    text = _unmarked(stripped)
    if _ATTRIBUTION.fullmatch(text):
        return True
    inner = text.rstrip(" \t.:：>*-_=").casefold()
    wrapped = stripped[0] in "-_*=" and stripped[-1] in "-_*=:"
    if wrapped and inner in _SEPARATORS:
        return True
    if inner.endswith(_FINAL_VERBS):
        # "---- Ann wrote ----" (Android); else a date, a time or an address must show it
        # is an attribution, not a reviewer's "My teacher once wrote:".
        return wrapped or "@" in inner or bool(_TIME.search(inner) or _dated(inner))
    ends_with_colon = stripped.endswith((":", "："))
    if ends_with_colon and "@" in inner and _EMAIL_IN_BRACKETS.search(stripped):
        return bool(_TIME_OR_DATE.search(inner))  # Gmail in Russian, Japanese: no verb
    if any(verb in inner for verb in _INNER_VERBS):
        return ends_with_colon and ("@" in inner or bool(_TIME.search(inner)))
    return False


def is_bare_attribution(line: str) -> bool:
    """ "Ann Writer wrote:" -- an attribution only when a quote follows it (see reply.py)."""
    stripped = line.strip()
    if len(stripped) > 80 or not stripped.endswith(":"):
        return False
    inner = _unmarked(stripped).rstrip(" :").casefold()
    return len(inner.split()) <= 6 and inner.endswith(_FINAL_VERBS)


def _dated(text: str) -> bool:
    return bool(_DATE.search(text))


def attribution_start(line: str) -> tuple[str, str]:
    """(the reviewer's words, the start of an attribution) in a line that may begin one;
    ('', '') when it cannot. An attribution may follow a sentence on the same line."""
    for found in _MIDLINE.finditer(line):
        before, start = line[: found.end()], line[found.end() :]
        if is_attribution(start) or (
            start.rstrip().endswith("<") or not start.rstrip().endswith((".", "!", "?"))
        ):
            return before, start
    if _START.match(_unmarked(line.strip())):
        return "", line
    return "", ""


def quote_depth(line: str) -> int:
    """How many ">" open a line."""
    return line[: len(line) - len(line.lstrip(" \t>"))].count(">")


def unquote(line: str) -> str:
    """A line without any of its quote marks (">", "> >", ">>")."""
    return line.lstrip(" \t>")


def unquote_once(line: str) -> str:
    return _UNQUOTE_ONCE.sub("", line)
