// Browser Privacy Pass client: requests and finalizes one publicly verifiable
// token (RFC 9578, token type 0x0002, blind RSA RFC 9474
// RSABSSA-SHA384-PSS-Deterministic), built from @cloudflare/privacypass-ts.
// `npm run build:tokens` bundles this file into surveys/static/surveys/vendor/tokens.js,
// served from the site itself; it loads nothing at run time.
//
// Global API (window.ChorusTokens); every byte string is base64url without padding:
//   await ChorusTokens.request(tokenKey, challenge) -> { tokenRequest, state }
//     tokenKey: the issuer's token_key (SPKI of the RSASSA-PSS key, RFC 9578 6.5)
//     challenge: TokenChallenge bytes (RFC 9577 2.1)
//     tokenRequest: TokenRequest bytes to send to the issuer
//     state: a string to keep (e.g. sessionStorage) until the response arrives
//   await ChorusTokens.finalize(state, tokenResponse) -> Token bytes
//     (token_type || nonce || challenge_digest || token_key_id || authenticator)
//
// State between page loads: privacypass-ts's publicVerif.Client keeps what
// finalize needs in a private field, so the Client object cannot outlive the
// page. This module does the same steps as Client.createTokenRequest with the
// package's public exports (AuthenticatorInput, publicVerif.TokenRequest,
// TOKEN_TYPES.BLIND_RSA.suite, util.convertRSASSAPSSToEnc) and puts the three
// things finalize needs in `state`: the token key, the token input
// (AuthenticatorInput bytes: type, nonce, challenge digest, key id) and the
// blind inverse. The state links the request to the token: whoever reads it
// can tell the issuer which token came from which request. Keep it no longer
// than needed and delete it after finalize.
import {
    AuthenticatorInput,
    Token,
    TokenChallenge,
    TOKEN_TYPES,
    publicVerif,
    util,
} from '@cloudflare/privacypass-ts';

const BLIND_RSA = TOKEN_TYPES.BLIND_RSA;
// Mode PSS is salt length 48: RSABSSA-SHA384-PSS-Deterministic, as RFC 9578 6 names.
const MODE = publicVerif.BlindRSAMode.PSS;
const STATE_VERSION = 1;

function toB64url(bytes) {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromB64url(text, what) {
    if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
        throw new TypeError(`${what}: not base64url`);
    }
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) {
        bytes[i] = binary.charCodeAt(i);
    }
    return bytes;
}

function importTokenKey(tokenKey) {
    // WebCrypto imports no RSASSA-PSS OID, so the key goes in as rsaEncryption;
    // extractable because blindrsa-ts reads the modulus back out of it.
    const spki = util.convertRSASSAPSSToEnc(tokenKey);
    return crypto.subtle.importKey('spki', spki, BLIND_RSA.rsaParams, true, ['verify']);
}

function sameBytes(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

async function request(tokenKeyB64url, challengeB64url) {
    const tokenKey = fromB64url(tokenKeyB64url, 'tokenKey');
    const challengeBytes = fromB64url(challengeB64url, 'challenge');
    const challenge = TokenChallenge.deserialize(challengeBytes);
    if (challenge.tokenType !== BLIND_RSA.value) {
        throw new Error(`challenge: token type ${challenge.tokenType}, not ${BLIND_RSA.value}`);
    }
    if (!sameBytes(challenge.serialize(), challengeBytes)) {
        throw new Error('challenge: trailing or malformed bytes');
    }
    const publicKey = await importTokenKey(tokenKey);
    const nonce = crypto.getRandomValues(new Uint8Array(AuthenticatorInput.NONCE_LENGTH));
    const tokenKeyId = await sha256(tokenKey);
    // Digest of the bytes as received, which is what the origin will hash too.
    const challengeDigest = await sha256(challengeBytes);
    const authInput = new AuthenticatorInput(
        BLIND_RSA,
        BLIND_RSA.value,
        nonce,
        challengeDigest,
        tokenKeyId,
    );
    const tokenInput = authInput.serialize();
    const { blindedMsg, inv } = await BLIND_RSA.suite[MODE]().blind(publicKey, tokenInput);
    // truncated_token_key_id: the last byte of token_key_id.
    const tokenRequest = new publicVerif.TokenRequest(
        tokenKeyId[tokenKeyId.length - 1],
        blindedMsg,
        BLIND_RSA,
    );
    const state = JSON.stringify({
        v: STATE_VERSION,
        key: toB64url(tokenKey),
        input: toB64url(tokenInput),
        inv: toB64url(inv),
    });
    return { tokenRequest: toB64url(tokenRequest.serialize()), state };
}

async function finalize(state, tokenResponseB64url) {
    let saved;
    try {
        saved = JSON.parse(state);
    } catch {
        throw new TypeError('state: not JSON');
    }
    if (!saved || saved.v !== STATE_VERSION) {
        throw new TypeError('state: unknown version');
    }
    const tokenKey = fromB64url(saved.key, 'state key');
    const tokenInput = fromB64url(saved.input, 'state input');
    const inv = fromB64url(saved.inv, 'state inv');
    const responseBytes = fromB64url(tokenResponseB64url, 'tokenResponse');
    if (responseBytes.length !== BLIND_RSA.Nk) {
        throw new Error(`tokenResponse: ${responseBytes.length} bytes, not ${BLIND_RSA.Nk}`);
    }
    const tokenResponse = publicVerif.TokenResponse.deserialize(responseBytes);
    const read = { bytesRead: 0 };
    const authInput = AuthenticatorInput.deserialize(BLIND_RSA, tokenInput, read);
    if (read.bytesRead !== tokenInput.length) {
        throw new Error('state: token input has trailing bytes');
    }
    if (!sameBytes(await sha256(tokenKey), authInput.tokenKeyId)) {
        throw new Error('state: token key does not match its key id');
    }
    const publicKey = await importTokenKey(tokenKey);
    // Throws unless the unblinded signature verifies under the token key.
    const authenticator = await BLIND_RSA.suite[MODE]().finalize(
        publicKey,
        tokenInput,
        tokenResponse.blindSig,
        inv,
    );
    return toB64url(new Token(BLIND_RSA, authInput, authenticator).serialize());
}

globalThis.ChorusTokens = Object.freeze({ tokenType: BLIND_RSA.value, request, finalize });
