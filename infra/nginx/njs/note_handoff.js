/*
 * A screen's answer, handed to the note path (docs/screen.md).
 *
 * NGINX proxies an X-ray screen to HOSP as it proxies any request, with the
 * same retries; this body filter watches HOSP's answer on its way to the nurse
 * without changing a byte of it (each buffer is passed on as it comes, before
 * anything else is done with it). When the answer is a 2xx with a JSON type
 * and no content encoding, and its last byte has gone to the nurse, the filter
 * posts the hand-off to the Chalice app's note intake by a detached
 * subrequest to /_proxy/note-handoff (screen-locations.conf):
 *
 *     {"patient_id", "user", "request_id", "answer": base64 of HOSP's bytes}
 *
 * The nurse's credentials are never in it. The request's log line says what
 * happened (the access log's note_handoff field, `state` below):
 *
 *     sent        the hand-off was posted; the app's log says queued, the
 *                 proxy's note-handoff-failed log holds it whole otherwise
 *     not-2xx     HOSP (or the proxy) answered something else: no note
 *     not-json    a 2xx that is not JSON: no note
 *     encoded     a 2xx with a Content-Encoding: no note (the proxy asks HOSP
 *                 for none on screens, so HOSP chose to)
 *     too-large   an answer over MAX_ANSWER bytes (80 KiB): no note
 *     incomplete  the answer ended before its last byte (HOSP broke it off,
 *                 or the nurse went away): no note
 *
 * Only the answer (a few kilobytes) enters the JavaScript VM; the screen's
 * body, up to 16 MiB, never does. A retried screen starts afresh in
 * @hosp_retry (NGINX clears a request's module state on the jump), so only
 * the answer the nurse gets is handed off.
 */

// The largest answer handed off; the note intake takes the same
// (chalicelib/note_intake.py). HOSP's screening answers are a few KB (about
// 150 bytes an image); the job that holds one, escaped as JSON (at most 3
// bytes for each of the answer's), fits an SQS message (256 KiB) whatever it holds.
var MAX_ANSWER = 81920;
var JSON_TYPE = /^application\/(?:[A-Za-z0-9.+-]*\+)?json\s*(?:;|$)/i;

var decided = '';  // '' until the first buffer: 'capture', or why not
var chunks = [];
var size = 0;
var outcome = '';  // the log's value once the last byte has passed

function decide(r) {
    if (r.status < 200 || r.status > 299) {
        return 'not-2xx';
    }
    if (!JSON_TYPE.test(r.headersOut['Content-Type'] || '')) {
        return 'not-json';
    }
    var encoding = r.headersOut['Content-Encoding'];
    if (encoding && encoding.toLowerCase() !== 'identity') {
        return 'encoded';
    }
    return 'capture';
}

function capture(r, data, flags) {
    r.sendBuffer(data, flags);
    if (r.variables.hosp_route !== 'screen') {
        return;
    }
    if (decided === '') {
        decided = decide(r);
    }
    if (decided === 'capture' && data.length) {
        size += data.length;
        if (size > MAX_ANSWER) {
            decided = 'too-large';
            chunks = [];
        } else {
            chunks.push(data);
        }
    }
    if (!flags.last) {
        return;
    }
    // The nurse's request_time ends here, with her answer's last byte; the
    // request itself ends when the hand-off does (logging.conf).
    r.variables.hosp_answered_in = r.variables.request_time;
    if (decided !== 'capture') {
        outcome = decided;
        return;
    }
    var handoff = JSON.stringify({
        patient_id: r.variables.screen_patient,
        user: r.variables.hosp_log_user,
        request_id: r.variables.hosp_request_id,
        answer: Buffer.concat(chunks).toString('base64'),
    });
    chunks = [];
    // Says to the hand-off's locations that this is the hand-off, not a
    // client's request for their paths (screen-locations.conf).
    r.variables.hosp_handoff_sent = '1';
    r.subrequest('/_proxy/note-handoff', {method: 'POST', body: handoff, detached: true});
    outcome = 'sent';
}

// js_set $hosp_note_handoff: read when the request's log line is written.
function state(r) {
    if (r.variables.hosp_route !== 'screen') {
        return '';
    }
    if (outcome) {
        return outcome;
    }
    // No last byte went through the filter: an answer the proxy made itself
    // (an error page: never a 2xx), or one that broke off.
    var status = Number(r.variables.status);
    return status >= 200 && status <= 299 ? 'incomplete' : 'not-2xx';
}

export default {capture, state};
