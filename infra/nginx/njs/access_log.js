/*
 * The access log's client-supplied text, the patient a write's body names and
 * the patient a note listing's query names (docs/access-log.md). logging.conf
 * imports this file; each exported function is one js_set variable, read when
 * NGINX writes the request's log line, and only for a write's body, a note
 * listing's query that is not plainly "patient_id=<digits>", or text that is
 * not plain ASCII: logging.conf's maps write the rest, without starting njs.
 *
 * Client text. NGINX's escape=json writes bytes 0x80-0xFF as they are, so one
 * byte that is not UTF-8 in a header or the path made the whole line invalid
 * JSON. Here every valid UTF-8 sequence is kept as it is, every other byte
 * becomes the four characters \xHH (lowercase hex), and a backslash becomes
 * two backslashes. So the text is valid UTF-8 and the escaping can be undone:
 * the byte 0xFF is written \xff, the four characters "\xff" are written \\xff.
 * escape=json then escapes quotes and control characters, as before. Text
 * is bounded: past the log's text limit (hosp_log_text_limit bytes of
 * escaped text) it is cut before the character or escape that would pass
 * the limit, and ends with CUT, which no escaped text can hold (a backslash
 * is always doubled or starts \xHH).
 *
 * Patient ids. A patient id is logged as what it is: ASCII digits, without
 * their leading zeros, at most 18 of them (HOSP's ids, the audit filter's);
 * any other value as NOT_AN_ID, never as the text a client sent.
 *
 * body_patient_id. Every top-level "patient_id" of a POST, PUT or PATCH whose
 * body is a JSON object. A body may name it twice, and which one HOSP takes
 * (the first, the last) is HOSP's parser's business, which is a black box: so
 * every value is logged, each once, in their order, joined by ",". The body
 * itself is never logged.
 *
 * query_patient_id. Every patient_id a note listing asks for in its query, as
 * HOSP's query parser reads fields (Python's urllib.parse.parse_qs with its
 * defaults): the values, each once, in their order, joined by ",", so that the
 * audit query need decode nothing a client sent.
 *
 * The scanner is bounded. njs has no garbage collector (what a request
 * allocates is freed when it ends) and a worker runs one script at a time, so
 * it reads the body's bytes once, in one loop, without recursion, JSON.parse
 * or a regular expression per token, and allocates nothing per token: string
 * contents are skipped with Buffer.indexOf, at memory speed. What costs
 * JavaScript work (a token, an escape in a string, a byte of whitespace or of
 * a number: a step) is capped at MAX_STEPS, and nesting at MAX_DEPTH.
 */

// What the log says when the body cannot tell: not read in full, not sent on,
// larger than the scan limit, not JSON, not an object, past a bound, or a
// patient_id that is neither a string nor a number.
var UNKNOWN = '?';
// A patient_id that is not one: not ASCII digits, more than 18 digits without
// leading zeros, or not a string or a number.
var NOT_AN_ID = 'not-an-id';
var MAX_ID_DIGITS = 18;
// The patient ids a request's body or query names, each once; past this
// many, the list ends with CUT.
var MAX_PATIENT_IDS = 16;
var ID_SEPARATOR = ',';
// Ends a field that was cut: a backslash and three dots. Client text never
// holds a backslash but doubled or in \xHH.
var CUT = '\\...';
var WRITES = {POST: true, PUT: true, PATCH: true};
// A screen names its patient in the path, and its body is images, up to
// 16 MiB (docs/screen.md): not scanned.
var UNSCANNED_ROUTES = {'screen': true, 'screen-not-a-patient': true};
// Ruby's JSON refuses more than 100 levels by default and Python's json
// stops near its recursion limit of 1000: no body HOSP can parse is deeper.
var MAX_DEPTH = 1000;
// About 25 ms of a worker at most. A HOSP write body takes a few dozen
// steps; a note's text is one string, and only its escapes count.
var MAX_STEPS = 50000;

var HEX = '0123456789abcdef';
var QUOTE = 0x22;
var BACKSLASH = 0x5c;
var TAB = 0x09;
var LF = 0x0a;
var CR = 0x0d;
// Characters JSON allows nowhere. Tab, LF and CR are whitespace between
// tokens, and are not allowed inside strings either (checked there).
var CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f]/;
// The escapes \" \\ \/ \b \f \n \r \t by the byte after the backslash, and
// what each decodes to, as client text (a backslash is written as two).
var SIMPLE_ESCAPES = {0x22: '"', 0x5c: '\\\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t'};
var SIMPLE_ESCAPE_CODES = {0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09};
var PATIENT_ID = 'patient_id';
var HASH = 0x23;
var PERCENT = 0x25;
var AMPERSAND = 0x26;
var PLUS = 0x2b;
var EQUALS = 0x3d;
var QUESTION_MARK = 0x3f;
var SPACE = 0x20;
var ZERO = 0x30;
var NINE = 0x39;
// U+FFFD, what Python's decoding with errors='replace' puts for each invalid
// UTF-8 sequence, in UTF-8.
var REPLACEMENT = [0xef, 0xbf, 0xbd];
var LITERALS = {0x74: 'true', 0x66: 'false', 0x6e: 'null'};
var HEX_VALUES = hexValues();

// Tokens: a structural byte ({ } [ ] : ,) is its own token; any other byte
// that starts none is an error.
var STRING = 256;
var NUMBER = 257;
var LITERAL = 258; // true, false, null
// What the scanner expects next.
var VALUE = 0;
var FIRST_VALUE = 1; // after "[": a value or "]"
var FIRST_KEY = 2; // after "{": a key or "}"
var KEY = 3;
var COLON = 4;
var AFTER_VALUE = 5; // "," or the end of the container

function clientText(variable) {
    return function (r) {
        return escapeBytes(r.rawVariables[variable], Number(r.variables.hosp_log_text_limit));
    };
}

function bodyPatientId(r) {
    if (!WRITES[r.variables.hosp_log_method] || UNSCANNED_ROUTES[r.variables.hosp_route]) {
        return '';
    }
    // NGINX sends a body on only once it has read all of it; one it refused
    // (413) or that was cut short (400, 408) never reached HOSP.
    if (!r.variables.upstream_addr) {
        return UNKNOWN;
    }
    var body;
    var size;
    try {
        body = r.requestBuffer;
        size = body ? body.length : 0;
    } catch (e) {
        return UNKNOWN; // in a temporary file (larger than client_body_buffer_size), or empty
    }
    if (size === 0 || size > Number(r.variables.hosp_body_scan_limit)) {
        return UNKNOWN;
    }
    try {
        return patientIdOf(body);
    } catch (e) {
        r.error('body_patient_id: the scanner failed: ' + e);
        return UNKNOWN;
    }
}

// "malformed" for a request NGINX refused while reading it (its normalized
// path is empty; screen-policy.conf asks only then), unless NGINX read its
// request line and headers and refused it for its Host: a 400 without a host
// NGINX accepted (none in an HTTP/1.1 request, or an invalid one). NGINX
// counts the request line and its line ending in request_length, then each
// header line it read: so the headers were read when request_length passes
// the request line by more than a CRLF.
function unread(r) {
    var line = r.rawVariables.request;
    var headersRead = r.variables.hosp_log_method !== ''
        && Number(r.variables.request_length) > (line ? line.length : 0) + 2;
    return headersRead && r.variables.status === '400' && !r.variables.host ? '' : 'malformed';
}

/* Client text */

// `bytes` (a Buffer; undefined for a variable that is not set) as client
// text of at most `limit` bytes (UTF-8): past it, cut before the character or
// escape that would pass it, and CUT added.
function escapeBytes(bytes, limit) {
    if (!bytes) {
        return '';
    }
    var n = bytes.length;
    var parts = [];
    var start = 0; // the first byte not yet in parts
    var size = 0; // the bytes of text so far
    var i = 0;
    while (i < n) {
        var b = bytes[i];
        var read = 1; // bytes of input
        var written = 1; // bytes of text
        if (b >= 0x80 || b === BACKSLASH) {
            read = b === BACKSLASH ? 0 : sequenceLength(bytes, i, n);
            written = read;
            if (read === 0) {
                read = 1;
                written = b === BACKSLASH ? 2 : 4;
            }
        }
        if (size + written > limit) {
            parts.push(bytes.toString('utf8', start, i), CUT);
            return parts.join('');
        }
        size += written;
        if (written !== read) {
            parts.push(bytes.toString('utf8', start, i), b === BACKSLASH ? '\\\\' : hexByte(b));
            start = i + 1;
        }
        i += read;
    }
    if (start === 0) {
        return bytes.toString();
    }
    parts.push(bytes.toString('utf8', start, n));
    return parts.join('');
}

// The lead byte b of a UTF-8 sequence (RFC 3629: no overlong form, no
// surrogate, nothing above U+10FFFF): [its size, the lowest and highest
// allowed second byte], or null when b leads no sequence.
function leadOf(b) {
    if (b >= 0xc2 && b <= 0xdf) {
        return [2, 0x80, 0xbf];
    }
    if (b >= 0xe0 && b <= 0xef) {
        return [3, b === 0xe0 ? 0xa0 : 0x80, b === 0xed ? 0x9f : 0xbf];
    }
    if (b >= 0xf0 && b <= 0xf4) {
        return [4, b === 0xf0 ? 0x90 : 0x80, b === 0xf4 ? 0x8f : 0xbf];
    }
    return null;
}

// The length of the valid UTF-8 sequence at bytes[i], or 0.
function sequenceLength(bytes, i, n) {
    var lead = leadOf(bytes[i]);
    if (lead === null) {
        return 0;
    }
    var size = lead[0];
    if (i + size > n || bytes[i + 1] < lead[1] || bytes[i + 1] > lead[2]) {
        return 0;
    }
    for (var k = 2; k < size; k++) {
        if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) {
            return 0;
        }
    }
    return size;
}

function hexByte(b) {
    return '\\x' + HEX[b >> 4] + HEX[b & 15];
}

/* query_patient_id */

// Every non-blank value of the field patient_id in the query of the request
// target, read as Python's parse_qs reads the query that urllib.parse.urlsplit
// finds (HOSP's stand-in does exactly this): the query is what follows the
// first "?" up to the first "#" (a fragment, which HTTP servers drop; a "#"
// before any "?" leaves no query); fields are split on "&" only; a field
// without "=", or with nothing after it, is skipped; "+" is a space, and key
// and value are then percent-decoded as unquote() decodes them (below). Each
// value as a patient id (idOf), each once, in their order; "" when the query
// has no such field. One pass over the target, whose length NGINX's header
// buffers bound (8 kB).
function queryPatientId(r) {
    try {
        return listedPatientId(r.rawVariables.request_uri);
    } catch (e) {
        r.error('query_patient_id: the parser failed: ' + e);
        return UNKNOWN;
    }
}

function listedPatientId(target) {
    if (!target) {
        return '';
    }
    var n = target.length;
    var start = -1;
    for (var i = 0; i < n && start < 0; i++) {
        if (target[i] === HASH) {
            return '';
        }
        if (target[i] === QUESTION_MARK) {
            start = i + 1;
        }
    }
    if (start < 0) {
        return '';
    }
    var end = target.indexOf(HASH, start);
    if (end < 0) {
        end = n;
    }
    var ids = [];
    var field = start;
    while (field < end && ids.length <= MAX_PATIENT_IDS) {
        var next = target.indexOf(AMPERSAND, field);
        if (next < 0 || next > end) {
            next = end;
        }
        var equals = field;
        while (equals < next && target[equals] !== EQUALS) {
            equals++;
        }
        if (equals + 1 < next && isPatientIdKey(target, field, equals)) {
            addId(ids, idOf(unquote(target, equals + 1, next), 0, -1));
        }
        field = next + 1;
    }
    return idList(ids);
}

// Whether the key target[start] to target[end] decodes to "patient_id". Each
// of its ten characters takes one to three bytes ("%5F"), so a key of another
// length is not decoded.
function isPatientIdKey(target, start, end) {
    if (end - start < PATIENT_ID.length || end - start > 3 * PATIENT_ID.length) {
        return false;
    }
    var key = unquote(target, start, end);
    if (key.length !== PATIENT_ID.length) {
        return false;
    }
    for (var k = 0; k < key.length; k++) {
        if (key[k] !== PATIENT_ID.charCodeAt(k)) {
            return false;
        }
    }
    return true;
}

/* Patient ids */

// The bytes b[start] to b[end] (end -1: to the end) as a patient id: ASCII
// digits without their leading zeros ("0" if all are zeros), at most
// MAX_ID_DIGITS of them (kept as text: an id may have 18 digits, more than a
// JavaScript number holds exactly); anything else, and nothing, NOT_AN_ID.
function idOf(b, start, end) {
    if (end < 0) {
        end = b.length;
    }
    if (start === end) {
        return NOT_AN_ID;
    }
    var first = -1;
    for (var k = start; k < end; k++) {
        if (b[k] < ZERO || b[k] > NINE) {
            return NOT_AN_ID;
        }
        if (first < 0 && b[k] !== ZERO) {
            first = k;
        }
    }
    if (first < 0) {
        return '0';
    }
    if (end - first > MAX_ID_DIGITS) {
        return NOT_AN_ID;
    }
    var digits = '';
    for (var d = first; d < end; d++) {
        digits += String.fromCharCode(b[d]);
    }
    return digits;
}

// Adds `id` to `ids` unless it is there.
function addId(ids, id) {
    if (ids.indexOf(id) < 0) {
        ids.push(id);
    }
}

// The ids as logged: joined by ID_SEPARATOR; past MAX_PATIENT_IDS, the first
// ones and CUT.
function idList(ids) {
    if (ids.length > MAX_PATIENT_IDS) {
        return ids.slice(0, MAX_PATIENT_IDS).join(ID_SEPARATOR) + ID_SEPARATOR + CUT;
    }
    return ids.join(ID_SEPARATOR);
}

// The bytes of Python's unquote(text.replace('+', ' ')) for the field
// b[start] to b[end], with its defaults (UTF-8, errors='replace'). unquote
// takes the text in runs: each run of ASCII characters has its "%XX" escapes
// (two hex digits, either case) turned into bytes, a "%" before anything else
// kept, and is then decoded as UTF-8, each invalid sequence becoming U+FFFD;
// characters that are not ASCII are kept as they are. Here the query's raw
// bytes 0x80-0xFF (which a client should have percent-encoded) are kept as
// the bytes they are, and written as client text.
function unquote(b, start, end) {
    var out = [];
    var i = start;
    while (i < end) {
        var c = b[i];
        if (c >= 0x80) {
            out.push(c);
            i++;
            continue;
        }
        // One ASCII run: its bytes after the escapes, then decoded.
        var run = [];
        while (i < end && (c = b[i]) < 0x80) {
            if (c === PERCENT && i + 2 < end && HEX_VALUES[b[i + 1]] >= 0 && HEX_VALUES[b[i + 2]] >= 0) {
                run.push((HEX_VALUES[b[i + 1]] << 4) | HEX_VALUES[b[i + 2]]);
                i += 3;
            } else {
                run.push(c === PLUS ? SPACE : c);
                i++;
            }
        }
        decodeReplacing(run, out);
    }
    return out;
}

// Appends to `out` the UTF-8 of `bytes` decoded as Python decodes with
// errors='replace': valid sequences as they are, and U+FFFD for each maximal
// part of an invalid one (a lead byte and the continuation bytes that may
// follow it; any other byte alone), as the Unicode Standard recommends.
function decodeReplacing(bytes, out) {
    var n = bytes.length;
    var i = 0;
    while (i < n) {
        var b = bytes[i];
        if (b < 0x80) {
            out.push(b);
            i++;
            continue;
        }
        var size = sequenceLength(bytes, i, n);
        if (size > 0) {
            for (var k = 0; k < size; k++) {
                out.push(bytes[i + k]);
            }
            i += size;
            continue;
        }
        out.push(REPLACEMENT[0], REPLACEMENT[1], REPLACEMENT[2]);
        i += invalidLength(bytes, i, n);
    }
}

// The length of the invalid sequence at bytes[i]: a lead byte of a 2-, 3- or
// 4-byte sequence with the continuation bytes that may follow it there, or 1.
function invalidLength(bytes, i, n) {
    var lead = leadOf(bytes[i]);
    if (lead === null) {
        return 1;
    }
    var size = lead[0];
    var low = lead[1];
    var high = lead[2];
    var k = 1;
    while (k < size && i + k < n && bytes[i + k] >= low && bytes[i + k] <= high) {
        low = 0x80;
        high = 0xbf;
        k++;
    }
    return k;
}

/* body_patient_id */

// Every top-level patient_id of the JSON object in the body `b` (a Buffer),
// each value as a patient id (a string's decoded text or a number as
// written, if ASCII digits; NOT_AN_ID for anything else, null, true, false,
// an object or an array included), each once, in their order; "" when there
// is none, UNKNOWN when the body is not a JSON object or is past a bound. One
// loop, one token a turn, with no function call per token but for a
// patient_id's value: njs calls cost more than the work.
function patientIdOf(b) {
    var n = b.length;
    // A byte order mark is not JSON text (RFC 8259, section 8.1).
    if (n >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) {
        return UNKNOWN;
    }
    try {
        if (CONTROL.test(new TextDecoder('utf-8', {fatal: true}).decode(b))) {
            return UNKNOWN;
        }
    } catch (e) {
        return UNKNOWN; // not UTF-8, so not JSON
    }

    var p = 0;
    var steps = 0;
    var state = VALUE;
    var objects = []; // per open container, whether it is an object
    var depth = 0;
    var isPatientId = false; // the last key read at depth 1
    var ids = []; // the top-level patient_ids' values, as patient ids, each once

    // The next backslash, tab, LF and CR at or after where each was last
    // looked for (-1: none), so that the strings together read each once.
    var nextBackslash = -2;
    var nextTab = -2;
    var nextLF = -2;
    var nextCR = -2;
    var c;
    var token;
    var end;
    var escaped;
    for (;;) {
        while (p < n && ((c = b[p]) === 0x20 || c === LF || c === CR || c === TAB) && steps <= MAX_STEPS) {
            p++;
            steps++;
        }
        if (++steps > MAX_STEPS) {
            return UNKNOWN;
        }
        if (p === n) {
            break;
        }
        if (depth === 0 && state === AFTER_VALUE) {
            return UNKNOWN; // text after the object
        }

        // One token: its kind (a structural byte is its own) and its end.
        c = b[p];
        token = c;
        end = p + 1;
        if (c === QUOTE) {
            token = STRING;
            var q = p + 1;
            var close = b.indexOf(QUOTE, q);
            escaped = false;
            for (;;) {
                if (close < 0) {
                    return UNKNOWN;
                }
                if (nextBackslash !== -1 && nextBackslash < q) {
                    nextBackslash = b.indexOf(BACKSLASH, q);
                }
                if (nextBackslash === -1 || nextBackslash > close) {
                    break;
                }
                if (++steps > MAX_STEPS) {
                    return UNKNOWN;
                }
                escaped = true;
                var e = b[nextBackslash + 1];
                if (e === 0x75) {
                    var h = nextBackslash + 2;
                    if (!(HEX_VALUES[b[h]] >= 0 && HEX_VALUES[b[h + 1]] >= 0 && HEX_VALUES[b[h + 2]] >= 0
                          && HEX_VALUES[b[h + 3]] >= 0)) {
                        return UNKNOWN;
                    }
                    q = h + 4;
                } else if (SIMPLE_ESCAPES[e] !== undefined) {
                    q = nextBackslash + 2;
                } else {
                    return UNKNOWN;
                }
                if (q > close) {
                    close = b.indexOf(QUOTE, q); // that quote was escaped
                }
            }
            // Tab, LF and CR are not allowed inside a string.
            if (nextTab !== -1 && nextTab < p) {
                nextTab = b.indexOf(TAB, p);
            }
            if (nextLF !== -1 && nextLF < p) {
                nextLF = b.indexOf(LF, p);
            }
            if (nextCR !== -1 && nextCR < p) {
                nextCR = b.indexOf(CR, p);
            }
            if ((nextTab !== -1 && nextTab < close) || (nextLF !== -1 && nextLF < close)
                || (nextCR !== -1 && nextCR < close)) {
                return UNKNOWN;
            }
            end = close + 1;
        } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
            // RFC 8259: no leading zero, no "+", no bare ".".
            token = NUMBER;
            end = c === 0x2d ? p + 1 : p;
            if (b[end] === 0x30) {
                end++;
            } else if (b[end] >= 0x31 && b[end] <= 0x39) {
                while (b[end] >= 0x30 && b[end] <= 0x39 && steps <= MAX_STEPS) {
                    end++;
                    steps++;
                }
            } else {
                return UNKNOWN;
            }
            if (b[end] === 0x2e) {
                end++;
                if (!(b[end] >= 0x30 && b[end] <= 0x39)) {
                    return UNKNOWN;
                }
                while (b[end] >= 0x30 && b[end] <= 0x39 && steps <= MAX_STEPS) {
                    end++;
                    steps++;
                }
            }
            if (b[end] === 0x65 || b[end] === 0x45) {
                end++;
                if (b[end] === 0x2b || b[end] === 0x2d) {
                    end++;
                }
                if (!(b[end] >= 0x30 && b[end] <= 0x39)) {
                    return UNKNOWN;
                }
                while (b[end] >= 0x30 && b[end] <= 0x39 && steps <= MAX_STEPS) {
                    end++;
                    steps++;
                }
            }
            if (steps > MAX_STEPS) {
                return UNKNOWN;
            }
        } else if (LITERALS[c] !== undefined) {
            token = LITERAL;
            var word = LITERALS[c];
            for (var k = 1; k < word.length; k++) {
                if (b[p + k] !== word.charCodeAt(k)) {
                    return UNKNOWN;
                }
            }
            end = p + word.length;
        }

        // Where the token may stand.
        if (state === COLON) {
            if (token !== 0x3a) {
                return UNKNOWN;
            }
            state = VALUE;
        } else if (state === AFTER_VALUE || (state === FIRST_KEY && token === 0x7d)
                   || (state === FIRST_VALUE && token === 0x5d)) {
            if (token === 0x2c && state === AFTER_VALUE) {
                state = objects[depth - 1] ? KEY : VALUE;
            } else if (token === (objects[depth - 1] ? 0x7d : 0x5d)) {
                depth--;
                state = AFTER_VALUE;
            } else {
                return UNKNOWN;
            }
        } else if (state === FIRST_KEY || state === KEY) {
            if (token !== STRING) {
                return UNKNOWN;
            }
            if (depth === 1) {
                isPatientId = escaped ? decodesTo(b, p + 1, end - 1, PATIENT_ID) : isText(b, p + 1, end - 1, PATIENT_ID);
            }
            state = COLON;
        } else {
            // A value (VALUE, or FIRST_VALUE but "]"). The top level is an object.
            if (depth === 0 ? token !== 0x7b : token < STRING && token !== 0x7b && token !== 0x5b) {
                return UNKNOWN;
            }
            if (depth === 1 && isPatientId && ids.length <= MAX_PATIENT_IDS) {
                addId(ids, token === STRING ? stringId(b, p + 1, end - 1, escaped)
                      : token === NUMBER ? idOf(b, p, end) : NOT_AN_ID);
            }
            if (token === 0x7b || token === 0x5b) {
                if (depth === MAX_DEPTH) {
                    return UNKNOWN;
                }
                objects[depth++] = token === 0x7b;
                state = token === 0x7b ? FIRST_KEY : FIRST_VALUE;
            } else {
                state = AFTER_VALUE;
            }
        }
        p = end;
    }
    if (depth !== 0 || state !== AFTER_VALUE) {
        return UNKNOWN; // the object never closed, or the body is empty
    }
    return idList(ids);
}

// The checked JSON string between b[start] and b[end] (its quotes excluded)
// as a patient id: its decoded text, if that is ASCII digits.
function stringId(b, start, end, escaped) {
    if (!escaped) {
        return idOf(b, start, end);
    }
    var text = decode(b, start, end);
    for (var k = 0; k < text.length; k++) {
        if (text.charCodeAt(k) < ZERO || text.charCodeAt(k) > NINE) {
            return NOT_AN_ID;
        }
    }
    return idOf(Buffer.from(text), 0, -1);
}

// Whether b[start] to b[end] are the bytes of the ASCII `text`.
function isText(b, start, end, text) {
    if (end - start !== text.length) {
        return false;
    }
    for (var k = 0; k < text.length; k++) {
        if (b[start + k] !== text.charCodeAt(k)) {
            return false;
        }
    }
    return true;
}

// Whether the checked JSON string between b[start] and b[end] (its quotes
// excluded) decodes to the ASCII `text`; compared without allocating.
function decodesTo(b, start, end, text) {
    var i = start;
    for (var k = 0; k < text.length; k++) {
        var unit = b[i];
        if (unit === BACKSLASH) {
            var e = b[i + 1];
            if (e === 0x75) {
                unit = hexValue(b, i + 2);
                i += 6;
            } else {
                unit = SIMPLE_ESCAPE_CODES[e];
                i += 2;
            }
        } else {
            i++;
        }
        if (i > end || unit !== text.charCodeAt(k)) {
            return false;
        }
    }
    return i === end;
}

// The checked JSON string between b[start] and b[end] (its quotes excluded)
// decoded, as client text: a backslash is written as two, and a lone
// surrogate (a \uXXXX that UTF-8 cannot encode) as the three bytes of its
// generalized UTF-8 form, which are not UTF-8, so \xHH each.
function decode(b, start, end) {
    var s = b.subarray(start, end);
    var parts = [];
    var i = 0;
    for (;;) {
        var escape = s.indexOf(BACKSLASH, i);
        if (escape < 0) {
            parts.push(s.toString('utf8', i));
            return parts.join('');
        }
        parts.push(s.toString('utf8', i, escape));
        var e = s[escape + 1];
        if (e !== 0x75) {
            parts.push(SIMPLE_ESCAPES[e]);
            i = escape + 2;
            continue;
        }
        var unit = hexValue(s, escape + 2);
        i = escape + 6;
        if (unit >= 0xd800 && unit <= 0xdbff && s[i] === BACKSLASH && s[i + 1] === 0x75) {
            var low = hexValue(s, i + 2);
            if (low >= 0xdc00 && low <= 0xdfff) {
                parts.push(String.fromCodePoint(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)));
                i += 6;
                continue;
            }
        }
        parts.push(codeUnit(unit));
    }
}

function codeUnit(u) {
    if (u === BACKSLASH) {
        return '\\\\';
    }
    if (u >= 0xd800 && u <= 0xdfff) {
        return hexByte(0xe0 | (u >> 12)) + hexByte(0x80 | ((u >> 6) & 0x3f)) + hexByte(0x80 | (u & 0x3f));
    }
    return String.fromCharCode(u);
}

function hexValue(b, p) {
    return (HEX_VALUES[b[p]] << 12) | (HEX_VALUES[b[p + 1]] << 8) | (HEX_VALUES[b[p + 2]] << 4) | HEX_VALUES[b[p + 3]];
}

// The value of each hex digit, by its byte; -1 for any other byte. Every
// request that starts njs runs this file's top-level code in a VM of its own,
// so the table is filled natively, not by a loop over 256 bytes: that loop
// cost a write's line more than its whole body scan.
function hexValues() {
    var values = new Int8Array(256).fill(-1);
    for (var d = 0; d < 10; d++) {
        values[0x30 + d] = d;
    }
    for (var v = 10; v < 16; v++) {
        values[0x61 + v - 10] = v;
        values[0x41 + v - 10] = v;
    }
    return values;
}

export default {
    user: clientText('remote_user'),
    on_behalf_of: clientText('http_x_on_behalf_of'),
    forwarded_for: clientText('http_x_forwarded_for'),
    viewer_address: clientText('http_cloudfront_viewer_address'),
    path: clientText('hosp_log_path'),
    normalized_path: clientText('hosp_log_uri'),
    query: clientText('hosp_log_args'),
    method: clientText('hosp_log_method'),
    body_patient_id: bodyPatientId,
    query_patient_id: queryPatientId,
    unread: unread,
    user_agent: clientText('http_user_agent')
};
