"""A small deterministic tokenizer with a built-in vocabulary.

It stands in for a real model's tokenizer: token counts look plausible (about one token per common
English word, byte fallback for everything else) and ``decode(encode(s)) == s`` for every string,
lone surrogates included. Everything a request needs per token (text, JSON literal, UTF-8 bytes) is
precomputed once in ``__init__``.

Id layout:

* ``0..255``: raw bytes. ASCII bytes double as the one-character tokens; the pieces of the bytes
  ``128..255`` are ``"\\ufffd"``, as a partial UTF-8 sequence shows when streamed alone.
* ``256``: EOS, piece ``"</s>"``; then the chat role markers (``"<|user|>"`` and so on), each
  always one token wherever it appears in the text.
* then common English words (bare, with a leading space, capitalised), word fragments,
  punctuation runs, whitespace runs and a few non-ASCII characters.
* last, the reasoning and tool-call markers (``"<think>"``, ``"<tool_call>"``...), one token
  each wherever they appear, like the role markers.
"""

from __future__ import annotations

import codecs
import re
import string
from array import array
from collections.abc import Callable, Sequence
from itertools import chain, islice

import ujson

EOS_TOKEN = "</s>"
CHAT_ROLES = ("system", "user", "assistant", "tool", "developer", "function")
SPECIAL_TOKENS = (EOS_TOKEN, *(f"<|{role}|>" for role in CHAT_ROLES))
# The reasoning and tool-call markers of Qwen3 / Hermes-style models: one token each, placed
# after every other id so that adding them left the older ids unchanged.
THINK_START, THINK_END = "<think>", "</think>"
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
MARKUP_TOKENS = (THINK_START, THINK_END, TOOL_CALL_START, TOOL_CALL_END)
# JSON punctuation runs that real BPE vocabularies hold (structured output and tool arguments
# are mostly JSON); after the markers, for the same reason.
_JSON_PIECES = ('{"', '":', '",', '"}', '["', '"]', "},", "}]", "[{", '"},', "}}]", ' {"', ' ["')

# Roughly by frequency: the corpus draws words with Zipf weights in this order.
_WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this from or
had by not but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number no most people my over know water than call
first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form
sentence great think say help low line turn cause much mean before move right boy old too same
tell does set three want air well also play small end put home read hand large add even land here
must big high such follow act why ask men change went light kind off need house picture try us
again animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye never
last let thought city tree cross farm hard start might story saw far sea draw left late run while
press close night real life few north open seem together next white children begin got walk
example paper group always music those both mark often letter until mile river car feet care second
book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel talk
bird soon body dog family direct leave song measure door product black short class wind question
happen complete ship area half rock order fire south problem piece told knew pass since top whole
king space heard best hour better true during hundred five remember step early hold west ground
interest reach fast sing listen six table travel less morning ten simple several toward war lay
against pattern slow center love person money serve appear road map rain rule pull cold notice
voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star box
field rest correct able done beauty drive stood contain front teach week final gave green quick
develop ocean warm free minute strong special mind behind clear produce fact street nothing course
stay wheel full force blue object decide surface deep moon island foot system busy test record boat
common gold possible plane dry wonder laugh thousand ago ran check game shape hot miss brought heat
snow bring yes distant fill east paint language among hello thank thanks please sorry welcome
assistant helpful user model data information server request response token text code function
value result process important different following however because provide support include
including using used based within without across around although therefore indeed perhaps maybe
quite rather really actually simply especially usually generally sometimes already yet today
tomorrow yesterday is are was were being has having does doing makes making gets getting goes
going gone comes coming takes taking taken knows known thinks thinking seems looks looking wants
needs used uses works working worked called calls asked asks tried tries trying gives given giving
tells told shows shown showing finds found means meant becomes became become leaves left feels felt
brings puts keeps kept begins started starts runs running lives lived moves moved helps helped
plays played turns turned writes written wrote reads reading learned learning changed changes
example examples things years days times ways people parts places words numbers lines names
questions answers problems points results values systems models users requests responses tokens
texts codes functions processes ideas books friends hands eyes states countries schools cities
groups families stories children women woman child men company companies business market
government public social national local general political economic human history health
education research service services program programs community development management technology
level levels report reports policy policies issue issues case cases effect effects role reason
reasons experience experiences field fields rate rates price prices cost costs control view
views member members law laws action actions kind kinds type types sense age center central
order orders course courses series similar single specific simple clear likely able available
possible recent current various major minor particular personal private natural original final
early late recent main key basic entire certain whole free full true false real common new old
high low good bad great small big large long short young important different same other next last
first second third best better worse worst less least more most many much few several each every
all both either neither another such own sure quite very too also just only even still already
often usually really always never sometimes perhaps probably certainly clearly simply finally
actually especially directly quickly slowly easily rather almost enough far away together instead
however therefore thus hence otherwise meanwhile moreover furthermore nevertheless although though
unless whether while because since until after before during above below under over between
among through across along around against toward towards upon within without into onto about
beyond behind near inside outside off per via
should would could might must shall will can may need ought
this that these those there here where when what which who whom whose why how
him her its our their them theirs ours yours mine myself yourself himself herself itself
ourselves themselves someone something somewhere anyone anything anywhere everyone everything
everywhere nobody nowhere none
create created creating provide provided providing include included includes require required
requires requiring allow allowed allows allowing consider considered considering continue
continued continues expect expected increase increased increasing reduce reduced improve improved
improving describe described describes explain explained explains understand understood
understanding suggest suggested suggests offer offered offers receive received remain remained
remains return returned returns represent represents define defined defines apply applied applies
handle handled handles generate generated generating output outputs input inputs prompt prompts
message messages content contents chat completion completions stream streaming latency seconds
second minute minutes hour hours week weeks month months number numbers percent total average
time times moment period end beginning middle top bottom front side left right line lines page
pages file files name names list lists set sets table tables key keys item items element elements
object objects class classes method methods option options feature features version versions
error errors example test tests case check checks step steps task tasks goal goals plan plans
design designs structure structures pattern patterns approach approaches solution solutions
question answer language languages word words sentence sentences paragraph paragraphs document
documents article articles image images picture pictures video videos sound audio music voice
network networks internet computer computers software hardware memory storage database
application applications tool tools device devices machine machines learning training trained
neural intelligence artificial science scientific knowledge theory practice quality quantity
energy power light heat water air fire earth nature environment climate weather animal animals
plant plants tree trees food body mind heart life death health care family friend friends home
house room door window street road city town country state nation world place area region space
land sea ocean river lake mountain island forest field garden farm market store shop price money
bank account card cost value pay paid buy bought sell sold trade job jobs work worker workers
office meeting team teams project projects leader manager staff employee customer customers client
clients partner partners student students teacher teachers school university college class lesson
game games sport sports player players ball win won lose lost score match season story stories
event events party parties news media film films show shows art artist culture society history
war peace power force army police law court judge justice right rights freedom choice decision
decisions rule rules reason purpose interest interests benefit benefits risk risks chance
opportunity opportunities challenge challenges difference differences change changes growth
success failure support supports effort efforts attention focus interest rest sleep dream dreams
hope fear love happy sad angry afraid glad proud tired sick ready careful strange easy difficult
hard soft heavy light dark bright hot cold warm cool wet dry clean dirty rich poor cheap expensive
fast slow quick safe dangerous beautiful pretty ugly nice kind fine wrong correct exact simple
complex modern ancient local global final whole half double main public private open closed
free busy empty full alive dead human natural physical mental social
red blue green yellow black white brown gray orange purple pink
one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty
hundred thousand million billion first second third fourth fifth once twice
monday tuesday wednesday thursday friday saturday sunday january february march april june
july august september october november december spring summer autumn winter morning evening
afternoon night today tonight
don doesn didn isn aren wasn weren won wouldn couldn shouldn hasn haven hadn
image audio video
amount amounts source sources statistical statistics fluent incorrect researcher researchers
evaluate evaluating evaluation benchmark benchmarks judgement judgment automatic automatically
metric metrics aspect aspects vast ability absolute absolutely academic accept accepted access
according accurate achieve achieved active activity activities actual added adding addition
additional address advance advanced advantage advice affect affected agency agent agents agree
agreed agreement ahead aim alone alternative amazing analysis analyze announce annual apart
apparently appeal appearance appropriate argue argument arm arms arrive arrived aside assume
assumed attack attempt attend attitude audience author authority avoid award aware awareness baby
background balance band bar basis battle bear beat bed behavior behaviour belief believe believed
belong beside bill bit blood board born boss brain branch bread break breakfast breath bridge brief
broad brother budget building buildings burn bus cake camera campaign candidate capacity capital
captain capture career carefully category catch caught cell century chain chair chance character
charge chief choose chosen church circle citizen civil claim climb clock clothes cloud club coach
coast coat coffee collect collection column combination combine comfort comfortable command comment
commercial commission commit committee communicate communication compare compared comparison
compete competition complain completely concept concern concerned concerning condition conditions
conference confidence confirm conflict connect connection conscious consequence conservative
constant construct construction consumer contact context contract contrast contribute
conversation cook copy corner corporate couple courage cousin crazy credit crew crime criminal
crisis critical criticism crowd cup currently cycle daily damage dance danger deal dear debate
decade deeply defence defense degree deliver delivery demand democracy department depend depending
deny depth desire desk despite destroy detail details determine developed developing diet
difficulty dinner direction director discover discovery discuss discussion disease display
distance distinct district divide division doctor dollar dollars domestic dozen drama dress drink
drop drug due duty earn eastern economy edge editor effective effectively efficient eight elect
election else email emerge emotion emotional employ employment enable encourage enemy engine
engineer engineering enjoy ensure enter entirely environmental episode equal equally equipment
escape essential establish established estate estimate eventually evidence exactly exam examine
excellent except exchange exciting executive exercise exist existing expand expansion experiment
expert explore express expression extend extent external extra extreme extremely facility factor
factors fail fair faith familiar famous fan fashion fat fault favorite federal fee feed feeling
fellow female fight finance financial finger finish firm fit fix flat flight floor flow folk foreign
forget forgotten formal former forward frame frequently fresh fruit fuel fun fund funding funny
future gain gap gas gather generation gentle gift glass god golden grade grand grant grass guard
guess guest guide guilty gun guy habit hair hall hang happened happens hardly hat hate heads hell
hidden hide highly hill hire historical hit hole holiday holy honest hospital host hotel huge hunt
hurt husband ice identify identity ignore ill illegal imagine impact implement imply importance
impossible impression improvement incident income independent index indicate individual industry
influence inform initial injury inner innocent insist instance institution instruction insurance
intelligent intend intense intention international interview introduce introduction invest
investment investigate involve involved iron item jacket join joint joke journal journey juice
jump junior jury kid kill kitchen knee knife knock label labour labor lack lady largely launch layer
leadership league lean length liberal library license lie lift limit limited link lip literature
loan location lock lonely loose lord loss lot loud lovely lower luck lucky lunch mail maintain
majority male manage manner margin marriage married master material matter maximum meal meaning
meat mechanism medical medium meet memory mention menu mere metal military milk mine minimum
minister minority mirror mission mistake mix mixed mobile mode moderate mood moral mostly motion
motor mount mouth movement movie multiple murder muscle museum mystery narrow native nearly neck
negative neighbor nervous net neutral newly newspaper noise normal normally nose novel nuclear
nurse obvious obviously occasion occur odd officer official oil okay opening operate operation
operator opinion opponent oppose opposite ordinary organization organize origin outcome overall
owner pace pack package pain pair palace panel parent parents park participant particularly partly
passage passenger past path patient pause peak pen percentage perfect perform performance permanent
permission phase phone photo phrase pick pilot pitch planet platform plate pleasure plenty plus
pocket poem poet poetry pool pop popular population port pose position positive possess possibility
post pot potential pour poverty practical pray prayer precise prefer preference prepare presence
present presentation preserve president pressure presumably prevent previous previously primary
prime prince principle print prior priority prison prisoner privacy prize procedure producer
production profession professional professor profile profit progress promise promote proof proper
properly property proportion proposal propose protect protection protein protest prove proved
psychology pupil purchase pure push quarter quietly quiet quote race radio raise range rank rapid
rapidly rare rarely ratio raw reaction reader reality realize reasonable recall recently recipe
recognize recommend recover reduction reference reflect reform refuse regard regarding regular
regulation reject relate related relation relationship relative relatively release relevant
relief religion religious rely remove rent repeat replace reply reputation rescue resident resist
resolution resource resources respect respond responsibility responsible restaurant retire reveal
revenue review revolution reward ride ring rise rising roll roof root rough route routine row royal
rural rush sale salt sample satisfy save scale scene schedule scheme scholar score screen script
search seat secret secretary section sector secure security seek select selection senior
sensitive separate sequence serious seriously session settle setting settlement seven severe shake
share sharp sheet shift shine shock shoe shoot shot shoulder shout sight sign signal significant
significantly silence silver sister sit site situation size skill skills skin sky slightly slip
smart smell smile smoke smooth somebody somehow son sort soul southern speak speaker speaking
species speech speed spend spent spirit split spot spread square stable stage stair standard stare
status steal steel stick stock stomach stone storm straight stranger strategy strength stress
stretch strike string strongly struggle studio stuff style subject submit succeed successful
suddenly suffer sugar suit summary supply suppose surprise surprised survey survive suspect sweet
swim switch symbol sympathy target taste tax tea tear technique technical telephone television
temperature temporary tend tendency tension term terms terrible thick thin threat threaten throw
ticket tie tight till tiny tip title tone tongue tooth topic touch tough tour tower track tradition
traditional traffic train transfer transport trap treat treatment trend trial trick trip trouble
truck truly trust truth typical typically uncle unique unlike upper urban urge useful vehicle
victim victory village violence virtual visible vision visit visitor vital volume vote wage wake
wall wander warn wash waste wave weak wealth weapon wear wedding weekend weight whatever whenever
wherever whisper wide widely wife wild willing wine wing winner wire wise wish wonderful wooden
worry worried worth writer writing yard yeah yield youth zone
"""

# Word pieces, so that a word outside the list still splits into a few tokens.
_FRAGMENTS = """
re un in im dis pre pro con com de ex en em sub inter trans non anti auto co mis semi super over
under out up per par para post mid micro macro multi poly mono bi tri uni tele bio geo hydro photo
neuro psych es ed ing ings er ers or ors est ly ty ity ities tion tions ation ations ition sion
sions ment ments ness able ible ably al ally ial ical ic ics ive ives ize ized izes izing ization
ise ised ous ious ful less ship hood ward wards ance ence ancy ency ant ent ist ists ism ure ures
age ages ary ory ery ies ied ier iest ian ians ite ites ine ines ide ides ate ates ated ating ator
ators ify ified ology ologies ologist graph graphy scope th ch sh st tr pl gr br cl cr fl fr gl pr
sc sk sl sm sn sp sw wh qu an ar at on le el il ol ur ir et it ot ut ab ac ad ag am ap as av ay ea
ee oo ou ow ai ei ie oi ue ck ll ss tt nn mm pp rr ff ng nd nt rt rd rs ns ms ks ts ph gh ion and
ter ere her ver all ons nce men ith ted ess ect rea eve int sta cti ica ear ain our iti rat ell str
ort tra sti ble ound ount ight ough ould ction ack ick ock uck ank ink unk ang ong ung ark ork ast
ost ust ace ice ake ike oke ale ile ole ame ime ome une ane ape ipe ope ire ore ase ose use ite ote
ute ave ove aze
"""

# Everything else in the vocabulary, after the words. Single ASCII characters are the byte tokens.
_EXTRAS = (
    " I",
    *(" " + c for c in string.ascii_letters),
    *(f" {d}" for d in range(10)),
    *_FRAGMENTS.split(),
    *(" " + fragment for fragment in _FRAGMENTS.split()),
    *(a + b for a in string.ascii_lowercase for b in string.ascii_lowercase),
    *(f" {a}{b}" for a in string.ascii_lowercase for b in string.ascii_lowercase),
    *("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"),
    *(f" {c}" for c in "([{\"'-+=*/<>&|#$%@`~^!?.,:;"),
    *("..", "...", "--", "---", "==", "!=", "<=", ">=", "->", "=>", "**", "##", "###", "```"),
    *("//", "/*", "*/", "</", "/>", "://", "::", "()", "[]", "{}", "{{", "}}", "[[", "]]"),
    *("),", ").", ");", "):", "();", '."', ',"', '?"', '!"', '",', '".', "',", "'."),
    *(" --", " ...", " ==", " ->", " =>", " **", " ##", " ###", " ```", " //", " </", " {{"),
    # Typographic punctuation and symbols: ellipsis, dashes, curly quotes, bullet, currency.
    *"\u2026\u2014\u2013\u2019\u2018\u201c\u201d\u00e9\u2022\u00b0\u20ac\u00a3\u00d7",
    *(" \u2014", " \u201c", " \u2022"),
    *(" " * n for n in range(2, 17)),
    *("\t" * n for n in range(2, 5)),
)

# The sentence punctuation of the synthetic text (single characters, so byte tokens).
_TEXT_PUNCTUATION = ".,?!;:\n"

# Characters that ujson escapes with ensure_ascii=False; pieces without them skip the encoder.
_JSON_ESCAPED = re.compile(r'[\x00-\x1f"\\]')

# Splits out the special tokens first, so that neighbouring text never absorbs them.
_SPECIAL_RE = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS + MARKUP_TOKENS)) + ")")

# GPT-2 style pre-tokenisation; covers every character, so nothing is dropped. A newline is always
# a piece of its own (as Llama's byte token for it is), which keeps the chat template's token
# overhead independent of the message contents.
# Runs are cut every 256 characters: a piece outside the vocabulary costs its length squared
# in the split, and a prompt of one 8 MB word must not hold a worker for minutes.
_PRETOKEN_RE = re.compile(
    r"'(?:[sdmt]|ll|ve|re)"  # contractions
    r"| ?[^\W\d_]{1,256}"  # letters
    r"| ?\d{1,256}"  # digits
    r"| ?(?:[^\w\s]|_){1,256}"  # punctuation, symbols, emoji
    r"|\n"
    r"|[^\S\n]{1,256}(?!\S)"  # whitespace, leaving one space for the next word
    r"|[^\S\n]{1,256}"
)

# Text seen before is not tokenised again: its ids are remembered, whole (texts up to a page:
# a short prompt sent again is one lookup), else by parts, at three levels. Chunks: text cut
# before every " t" (the, to, that, this... start one English word in six, so chunks are a
# few words long and cut where the content says, wherever the text begins); a long prompt
# that shares passages with earlier ones (conversation history, documents, benchmark text
# drawn from one vocabulary) is mostly a few chunk lookups. Words: the parts between spaces,
# for chunks not seen before. Pieces: what pre-tokenisation cuts words into, looked up in the
# vocabulary or split. Each memo holds two generations of at most (entries, longest key).
_TEXT_MEMO = (1024, 2048)
_CHUNK_MARK = " t"
_CHUNK_MEMO = (4096, 2048)
_WORD_MEMO = (32768, 64)
_PIECE_MEMO = (32768, 32)

# Token ids packed as machine int64s: memo entries join into a text's ids with one copy, and
# a prompt's ids can be hashed as they are.
IDS_TYPECODE = "q"

# What the pre-tokenisation's [^\S\n] matches: re's \s is str.isspace(), whose characters all
# lie below U+3001.
_BLANKS = frozenset(c for c in map(chr, range(0x3001)) if c.isspace() and c != "\n")

# Lone surrogates (legal in a Python str, e.g. from a JSON "\ud800" escape) are encoded with
# "surrogatepass", so decoding passes them back; any other invalid byte run becomes U+FFFD.
_DECODE_ERRORS = "dummy_vllm.surrogatepass_or_replace"
_surrogatepass = codecs.lookup_error("surrogatepass")


def _surrogatepass_or_replace(exc: UnicodeError) -> tuple[str | bytes, int]:
    try:
        return _surrogatepass(exc)
    except UnicodeDecodeError:
        return codecs.replace_errors(exc)


codecs.register_error(_DECODE_ERRORS, _surrogatepass_or_replace)


class _PartMemo(dict[str, bytes]):
    """The ids of ``mark + part`` by part (packed ``IDS_TYPECODE``), computed on first use.

    Two generations, so that parts in use survive while one-off ones leave: when this dict
    is full it becomes the previous generation, and a part found there moves back.

    With ``notes_blanks``, also notes the parts looked up since the last turn that are empty
    or end in a blank: after one of them, the space that starts ``mark`` may continue a run
    of blanks.
    """

    def __init__(
        self,
        encode: Callable[[str], bytes],
        mark: str,
        limits: tuple[int, int],
        notes_blanks: bool = False,
    ) -> None:
        super().__init__()
        self._encode = encode
        self._mark = mark
        self._entries, self._key_length = limits
        self._notes_blanks = notes_blanks
        self._previous: dict[str, bytes] = {}
        self.blank_ended: set[str] = set()

    def __missing__(self, part: str) -> bytes:
        ids = self._previous.get(part)
        if ids is None:
            ids = self._encode(self._mark + part)
        if len(part) <= self._key_length:
            self[part] = ids
        if self._notes_blanks and (not part or part[-1] in _BLANKS):
            self.blank_ended.add(part)
        return ids

    def turn(self) -> None:
        """Between texts (a text never loses its own parts): start a new generation if full."""
        if len(self) >= self._entries or len(self.blank_ended) >= self._entries:
            self._previous = dict(self)
            self.clear()
            self.blank_ended.clear()


def _joined(text: str, mark: str, heads: _PartMemo, tails: _PartMemo) -> tuple[bytes, list[str]]:
    """The packed ids of ``text`` (no special token in it) as the concatenation of its parts
    cut before every ``mark``, from the memos; and the parts."""
    parts = text.split(mark)
    if len(parts) == 1:
        return heads[text], parts
    packed = b"".join(chain((heads[parts[0]],), map(tails.__getitem__, islice(parts, 1, None))))
    return packed, parts


class Tokenizer:
    """Deterministic tokenizer: built-in vocabulary, fewest-token splits, byte fallback."""

    vocab_size: int
    eos_token_id: int
    word_ids: Sequence[int]
    """Ids the synthetic text is made of: whole words (with a leading space, or capitalised
    without one), sentence punctuation and ``"\\n"``. Each decodes cleanly on its own."""

    def __init__(self) -> None:
        words = _WORDS.split()
        spaced = [" " + w for w in words]
        caps = [w.capitalize() for w in words]
        spaced_caps = [" " + c for c in caps]
        # Ordered and de-duplicated, so ids follow the word list's frequency order.
        forms = chain.from_iterable(zip(words, spaced, caps, spaced_caps, strict=True))
        texts: list[str] = [
            t
            for t in dict.fromkeys(
                chain(SPECIAL_TOKENS, forms, _EXTRAS, MARKUP_TOKENS, _JSON_PIECES)
            )
            if len(t) > 1 or not t.isascii()
        ]
        pieces: list[str] = [chr(b) if b < 128 else "\ufffd" for b in range(256)] + texts
        raw = [bytes([b]) for b in range(256)] + [t.encode() for t in texts]
        vocab = {chr(b): b for b in range(128)}
        vocab.update(zip(texts, range(256, len(pieces)), strict=True))

        self.vocab_size = len(pieces)
        self.eos_token_id = vocab[EOS_TOKEN]
        self.word_ids = tuple(
            sorted({vocab[t] for t in chain(spaced, caps, spaced_caps, _TEXT_PUNCTUATION)})
        )
        self._vocab = vocab
        self._pieces = dict(enumerate(pieces))
        self._bytes = dict(enumerate(raw))
        self._json = {
            i: (
                ujson.dumps(p, ensure_ascii=False, escape_forward_slashes=False).encode()
                if _JSON_ESCAPED.search(p)
                else b'"' + p.encode() + b'"'
            )
            for i, p in enumerate(pieces)
        }
        # For the split of unknown pieces: every prefix of a vocabulary string, True if it is
        # one itself. Specials are left out: they never occur inside a piece.
        prefixes: dict[str, bool] = {}
        for text in vocab.keys() - {*SPECIAL_TOKENS, *MARKUP_TOKENS}:
            for end in range(1, len(text)):
                prefixes.setdefault(text[:end], False)
            prefixes[text] = True
        self._prefixes = prefixes
        self._specials = {
            t: array(IDS_TYPECODE, [vocab[t]]).tobytes() for t in (*SPECIAL_TOKENS, *MARKUP_TOKENS)
        }
        # A text's first chunk and the ones after each _CHUNK_MARK; a chunk's first word and
        # the ones after each space.
        self._chunk_heads = _PartMemo(self._encode_words, "", _CHUNK_MEMO)
        self._chunks = _PartMemo(self._encode_words, _CHUNK_MARK, _CHUNK_MEMO)
        self._heads = _PartMemo(self._packed_pieces, "", _WORD_MEMO)
        self._spaced = _PartMemo(self._packed_pieces, " ", _WORD_MEMO, notes_blanks=True)
        self._pieces_memo = _PartMemo(self._packed_piece, "", _PIECE_MEMO)
        self._texts = _PartMemo(self._encode_text, "", _TEXT_MEMO)
        self._memos = (
            self._texts,
            self._chunk_heads,
            self._chunks,
            self._heads,
            self._spaced,
            self._pieces_memo,
        )

    def encode(self, text: str) -> list[int]:
        return self.ids(text).tolist()

    def ids(self, text: str) -> array[int]:
        """The token ids of ``text``, packed (``IDS_TYPECODE``).

        Pre-tokenisation never puts a space inside a piece, except in a run of blanks: text
        cut before a space that follows anything but a blank tokenises as the concatenation
        of its parts. So text not seen whole is cut into chunks, then words, whose packed ids
        come from memos and are joined at C speed; only words never seen go through the
        pre-tokenising regular expression and the vocabulary.
        """
        for memo in self._memos:
            memo.turn()
        return array(IDS_TYPECODE, self._texts[text])

    def _encode_text(self, text: str) -> bytes:
        if "<" not in text:  # no special token
            return self._encode_chunks(text)
        parts = []
        # re.split with a capturing group alternates plain text and special tokens.
        for i, segment in enumerate(_SPECIAL_RE.split(text)):
            parts.append(self._specials[segment] if i % 2 else self._encode_chunks(segment))
        return b"".join(parts)

    def _encode_chunks(self, text: str) -> bytes:
        # A space before anything but whitespace always starts a piece (a run of blanks before
        # it leaves it to the word), so every cut before " t" is a boundary.
        return _joined(text, _CHUNK_MARK, self._chunk_heads, self._chunks)[0]

    def _encode_words(self, text: str) -> bytes:
        packed, words = _joined(text, " ", self._heads, self._spaced)
        # After a blank, a space may continue a run of blanks, which is one piece: then the
        # cut is no boundary (conservatively: whatever follows the space).
        if len(words) > 1 and (
            words[0][-1:] in _BLANKS
            or not self._spaced.blank_ended.isdisjoint(islice(words, 1, len(words) - 1))
        ):
            return self._packed_pieces(text)
        return packed

    def _packed_pieces(self, text: str) -> bytes:
        """Pre-tokenise ``text`` (which holds no special token) and look up its pieces."""
        return b"".join(map(self._pieces_memo.__getitem__, _PRETOKEN_RE.findall(text)))

    def _packed_piece(self, piece: str) -> bytes:
        token_id = self._vocab.get(piece)
        ids = (token_id,) if token_id is not None else self._split(piece)
        return array(IDS_TYPECODE, ids).tobytes()

    def _split(self, piece: str) -> tuple[int, ...]:
        """Fewest-tokens split of a piece that is not in the vocabulary.

        Dynamic programming from the end: ``cost[i]`` is the fewest tokens for ``piece[i:]``;
        a character with no vocabulary match costs its UTF-8 bytes.
        """
        vocab, prefixes = self._vocab, self._prefixes
        end = len(piece)
        cost = [0] * (end + 1)
        step = [0] * end  # the chosen length at i; 0 = byte fallback
        for i in range(end - 1, -1, -1):
            # The vocabulary strings at i: extend while piece[i:j] still begins one.
            matches = []
            j = i + 1
            while j <= end and (known := prefixes.get(piece[i:j])) is not None:
                if known:
                    matches.append(j - i)
                j += 1
            best = len(piece[i].encode("utf-8", "surrogatepass")) + cost[i + 1]
            for length in reversed(matches):  # longest first: ties go to it
                candidate = 1 + cost[i + length]
                if candidate < best or (candidate == best and not step[i]):
                    best, step[i] = candidate, length
            cost[i] = best
        ids: list[int] = []
        i = 0
        while i < end:
            length = step[i]
            if length:
                ids.append(vocab[piece[i : i + length]])
                i += length
            else:
                ids.extend(piece[i].encode("utf-8", "surrogatepass"))
                i += 1
        return tuple(ids)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens included.

        Bytes are joined before decoding, so a character split over byte tokens comes back whole.
        """
        try:
            data = b"".join(map(self._bytes.__getitem__, ids))
        except KeyError as exc:
            raise ValueError(f"unknown token id {exc.args[0]!r}") from None
        return data.decode("utf-8", _DECODE_ERRORS)

    def piece(self, token_id: int) -> str:
        try:
            return self._pieces[token_id]
        except KeyError:
            raise ValueError(f"unknown token id {token_id!r}") from None

    def pieces(self, ids: Sequence[int]) -> str:
        """The pieces of ``ids`` joined: the text a stream of them shows, token by token."""
        try:
            return "".join(map(self._pieces.__getitem__, ids))
        except KeyError as exc:
            raise ValueError(f"unknown token id {exc.args[0]!r}") from None

    def piece_json(self, token_id: int) -> bytes:
        """``piece()`` as a compact JSON string literal, ready to splice into a response."""
        try:
            return self._json[token_id]
        except KeyError:
            raise ValueError(f"unknown token id {token_id!r}") from None

    def piece_bytes(self, token_id: int) -> list[int]:
        """The token's own UTF-8 bytes (a single byte for byte tokens), as logprobs report them."""
        try:
            return list(self._bytes[token_id])
        except KeyError:
            raise ValueError(f"unknown token id {token_id!r}") from None
