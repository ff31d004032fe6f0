/*
 * The local edge's viewer-request step: CloudFront's Function event built
 * from the NGINX request, the old-domain redirect's own handler run on it,
 * and its answer served, or the request passed on to the origin.
 *
 * `cloudfront_redirect.js` is infra/cloudfront/redirect.js as the deploy fills
 * it (its OLD_HOSTS and NEW_HOST lines), with one line added that exports its
 * handler; local/edge/cloudfront.py writes it at render time. The function's
 * text is not repeated or changed here.
 *
 * The event has CloudFront's documented shape (cloudfront-js-2.0, viewer
 * request): the method; the URI and the query string as the viewer sent them,
 * still percent-encoded; the query string as an object of {value} entries,
 * with multiValue when a key comes more than once; header names in lower
 * case, with value and multiValue likewise; cookies apart from the headers.
 * The request also has runtime 2.0's method rawQueryString(): the query as
 * the viewer sent it, without the "?"; "" for a "?" with nothing after it,
 * undefined when the request target has no "?". NGINX's $args does not tell
 * these two apart (njs 0.7.9 gives undefined for both, and $is_args is ""
 * for both), so the query is cut from $request_uri, the request target as
 * received, at its first "?". redirect.js takes the query from this method,
 * as at CloudFront, not from the object: the order of the pairs is the
 * viewer's, whatever order njs lists an object's keys in.
 * Bytes of the request target that are not UTF-8 cannot be JavaScript text:
 * then every byte above 0x7f is handed over percent-encoded.
 *
 * A returned object with a statusCode is an answer: its status, its headers
 * (location becomes Location) and its body, if any, go to the viewer. Anything
 * else passes the viewer's request on, unchanged, to @origin.
 */
import cloudfront from 'cloudfront_redirect.js';

function viewer_request(r) {
    var answer = cloudfront.handler(event(r));
    if (answer && answer.statusCode !== undefined) {
        respond(r, answer);
        return;
    }
    r.internalRedirect('@origin');
}

function event(r) {
    var target = text(r.rawVariables.request_uri);
    var mark = target.indexOf('?');
    var raw = mark < 0 ? undefined : target.slice(mark + 1);
    return {
        version: '1.0',
        context: {distributionId: 'local', eventType: 'viewer-request', requestId: r.variables.request_id},
        viewer: {ip: r.remoteAddress},
        request: {
            method: r.method,
            uri: mark < 0 ? target : target.slice(0, mark),
            querystring: querystring(raw === undefined ? '' : raw),
            headers: headers(r),
            cookies: cookies(r),
            rawQueryString: function () { return raw; },
        },
    };
}

// Bytes as text: UTF-8 when they are, else every byte above 0x7f as %XX.
function text(bytes) {
    try {
        return new TextDecoder('utf-8', {fatal: true}).decode(bytes);
    } catch (e) {
        var out = '';
        for (var i = 0; i < bytes.length; i++) {
            var b = bytes[i];
            out += b < 0x80 ? String.fromCharCode(b) : '%' + (b < 0x10 ? '0' : '') + b.toString(16).toUpperCase();
        }
        return out;
    }
}

// CloudFront's {value, multiValue} entries, in arrival order, into `into`.
function add(into, key, value) {
    if (!Object.prototype.hasOwnProperty.call(into, key)) {
        into[key] = {value: value};
        return;
    }
    var entry = into[key];
    if (!entry.multiValue) {
        entry.multiValue = [{value: entry.value}];
    }
    entry.multiValue.push({value: value});
}

// Keys and values as sent, nothing decoded; a key without "=" has the value "".
function querystring(query) {
    var result = Object.create(null);
    var pairs = query.split('&');
    for (var i = 0; i < pairs.length; i++) {
        if (pairs[i] === '') {
            continue;
        }
        var equals = pairs[i].indexOf('=');
        add(result, equals < 0 ? pairs[i] : pairs[i].slice(0, equals), equals < 0 ? '' : pairs[i].slice(equals + 1));
    }
    return result;
}

function headers(r) {
    var result = Object.create(null);
    var raw = r.rawHeadersIn;
    for (var i = 0; i < raw.length; i++) {
        var name = raw[i][0].toLowerCase();
        if (name !== 'cookie') {
            add(result, name, raw[i][1]);
        }
    }
    return result;
}

function cookies(r) {
    var result = Object.create(null);
    var raw = r.rawHeadersIn;
    for (var i = 0; i < raw.length; i++) {
        if (raw[i][0].toLowerCase() !== 'cookie') {
            continue;
        }
        var parts = raw[i][1].split(';');
        for (var j = 0; j < parts.length; j++) {
            var part = parts[j].trim();
            var equals = part.indexOf('=');
            if (part !== '') {
                add(result, equals < 0 ? part : part.slice(0, equals), equals < 0 ? '' : part.slice(equals + 1));
            }
        }
    }
    return result;
}

function respond(r, answer) {
    var location;
    var given = answer.headers || {};
    for (var name in given) {
        if (!Object.prototype.hasOwnProperty.call(given, name)) {
            continue;
        }
        var entry = given[name];
        var values = entry.multiValue && entry.multiValue.length ? entry.multiValue : [entry];
        if (name.toLowerCase() === 'location') {
            location = values[0].value;
            continue;
        }
        r.headersOut[name] = values.length === 1 ? values[0].value : values.map(function (v) { return v.value; });
    }
    var status = answer.statusCode;
    if (location !== undefined && status >= 300 && status < 400) {
        // NGINX writes a 3xx's text as its Location.
        r.return(status, location);
        return;
    }
    if (location !== undefined) {
        r.headersOut.Location = location;
    }
    r.return(status, body(answer.body));
}

function body(given) {
    if (given === undefined || given === null) {
        return '';
    }
    if (typeof given === 'string') {
        return given;
    }
    return given.encoding === 'base64' ? Buffer.from(given.data, 'base64') : given.data;
}

export default {viewer_request};
