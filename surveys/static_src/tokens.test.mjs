// Checks the built bundle surveys/static/surveys/vendor/tokens.js in Node (no
// browser): a token requested and finalized through window.ChorusTokens is
// issued and verified by privacypass-ts's own issuer and origin, and matches
// byte for byte what privacypass-ts's publicVerif.Client makes from the same
// random values. Run with `npm run test:tokens` (builds first) or
// `node --test surveys/static_src/` (builds only when the bundle is missing).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

import { Token, TokenChallenge, TOKEN_TYPES, publicVerif } from '@cloudflare/privacypass-ts';

const { BLIND_RSA } = TOKEN_TYPES;
const { BlindRSAMode, Client, Issuer, Origin, TokenRequest, TokenResponse } = publicVerif;
const MODE = BlindRSAMode.PSS;

const root = fileURLToPath(new URL('../../', import.meta.url));
const bundlePath = `${root}surveys/static/surveys/vendor/tokens.js`;
if (!existsSync(bundlePath)) {
    execFileSync('npm', ['run', '--silent', 'build:tokens'], { cwd: root, stdio: 'inherit' });
}
vm.runInThisContext(readFileSync(bundlePath, 'utf8'), { filename: bundlePath });
const { ChorusTokens } = globalThis;

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const unb64url = (text) => new Uint8Array(Buffer.from(text, 'base64url'));
const sha256 = (bytes) => new Uint8Array(createHash('sha256').update(bytes).digest());
const B64URL_UNPADDED = /^[A-Za-z0-9_-]+$/;

async function newIssuer() {
    const { privateKey, publicKey } = await Issuer.generateKey(MODE, {
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
    });
    const issuer = new Issuer(MODE, 'issuer.example', privateKey, publicKey);
    const tokenKey = await publicVerif.getPublicKeyBytes(publicKey);
    return { issuer, publicKey, tokenKey };
}

function newChallenge() {
    const context = crypto.getRandomValues(new Uint8Array(32));
    return new Origin(MODE, ['survey.example']).createTokenChallenge('issuer.example', context);
}

// What the issuer does with a TokenRequest: parse, blind-sign, serialize.
async function issue(issuer, tokenRequestB64url) {
    const tokenRequest = TokenRequest.deserialize(BLIND_RSA, unb64url(tokenRequestB64url));
    return b64url((await issuer.issue(tokenRequest)).serialize());
}

const setup = newIssuer();

test('exposes a small frozen global', () => {
    assert.deepEqual(Object.keys(ChorusTokens).sort(), ['finalize', 'request', 'tokenType']);
    assert.equal(ChorusTokens.tokenType, 0x0002);
    assert.ok(Object.isFrozen(ChorusTokens));
});

test('token_key is the RSASSA-PSS SPKI RFC 9578 6.5 names', async () => {
    const { tokenKey } = await setup;
    // AlgorithmIdentifier id-RSASSA-PSS (RFC 4055) with hashAlgorithm sha384,
    // maskGenAlgorithm mgf1 with sha384 and saltLength 48, then the 2048-bit key.
    const sha384 = '0609608648016503040202';
    const algorithm =
        '303d' +
        '06092a864886f70d01010a' + // id-RSASSA-PSS
        '3030' +
        ('a00d300b' + sha384) + // [0] hashAlgorithm
        ('a11a3018' + '06092a864886f70d010108' + '300b' + sha384) + // [1] mgf1(sha384)
        'a203020130'; // [2] saltLength 48
    const hex = Buffer.from(tokenKey).toString('hex');
    assert.equal(tokenKey.length, 342);
    assert.ok(hex.startsWith('30820152' + algorithm + '0382010f00' + '3082010a0282010100'), hex);
    assert.ok(hex.endsWith('0203010001'), 'public exponent 65537');
});

test('request, issue, finalize: the token verifies with privacypass-ts', async () => {
    const { issuer, publicKey, tokenKey } = await setup;
    const challenge = newChallenge();
    const challengeBytes = challenge.serialize();

    const { tokenRequest, state } = await ChorusTokens.request(b64url(tokenKey), b64url(challengeBytes));
    assert.match(tokenRequest, B64URL_UNPADDED);
    assert.equal(typeof state, 'string');
    const requestBytes = unb64url(tokenRequest);
    assert.equal(requestBytes.length, 2 + 1 + 256);
    assert.equal((requestBytes[0] << 8) | requestBytes[1], 0x0002);
    assert.equal(requestBytes[2], sha256(tokenKey)[31], 'truncated_token_key_id');

    // As a page would: keep the state as a string across a reload.
    const kept = JSON.parse(JSON.stringify({ state })).state;
    const tokenB64url = await ChorusTokens.finalize(kept, await issue(issuer, tokenRequest));
    assert.match(tokenB64url, B64URL_UNPADDED);

    const tokenBytes = unb64url(tokenB64url);
    assert.equal(tokenBytes.length, 2 + 32 + 32 + 32 + 256);
    const token = Token.deserialize(BLIND_RSA, tokenBytes);
    assert.equal(token.authInput.tokenType, 0x0002);
    assert.deepEqual(token.authInput.challengeDigest, sha256(challengeBytes));
    assert.deepEqual(token.authInput.tokenKeyId, sha256(tokenKey));
    assert.ok(await new Origin(MODE).verify(token, publicKey));
    assert.ok(await issuer.verify(token));
});

test('matches publicVerif.Client byte for byte given the same random values', async (t) => {
    const { issuer, tokenKey } = await setup;
    const challenge = newChallenge();
    // A fixed stream for getRandomValues (nonce, PSS salt, blind), replayed for both.
    const seeded = () => {
        let counter = 0;
        return (array) => {
            const out = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
            for (let i = 0; i < out.length; i += 32) {
                const block = sha256(Buffer.from(`chorus-tokens-test-${counter++}`));
                out.set(block.subarray(0, Math.min(32, out.length - i)), i);
            }
            return array;
        };
    };
    const mock = t.mock.method(crypto, 'getRandomValues', seeded());
    const ours = await ChorusTokens.request(b64url(tokenKey), b64url(challenge.serialize()));
    mock.mock.mockImplementation(seeded());
    const client = new Client(MODE);
    const theirs = await client.createTokenRequest(challenge, tokenKey);
    mock.mock.restore();

    assert.equal(ours.tokenRequest, b64url(theirs.serialize()));
    const response = await issue(issuer, ours.tokenRequest);
    const theirToken = await client.finalize(TokenResponse.deserialize(unb64url(response)));
    assert.equal(await ChorusTokens.finalize(ours.state, response), b64url(theirToken.serialize()));
});

test('finalize refuses a response signed for another request', async () => {
    const { issuer, tokenKey } = await setup;
    const key = b64url(tokenKey);
    const first = await ChorusTokens.request(key, b64url(newChallenge().serialize()));
    const second = await ChorusTokens.request(key, b64url(newChallenge().serialize()));
    const response = await issue(issuer, second.tokenRequest);
    await assert.rejects(ChorusTokens.finalize(first.state, response), /invalid signature/);
    await assert.rejects(ChorusTokens.finalize(second.state, response.slice(0, -4)), /bytes, not 256/);
    await assert.rejects(ChorusTokens.finalize('{}', response), /state: unknown version/);
});

test('request refuses another token type, padded or bad base64url', async () => {
    const { tokenKey } = await setup;
    const key = b64url(tokenKey);
    const voprf = new TokenChallenge(0x0001, 'issuer.example', new Uint8Array(32), ['survey.example']);
    await assert.rejects(ChorusTokens.request(key, b64url(voprf.serialize())), /token type 1, not 2/);
    const challenge = newChallenge().serialize();
    await assert.rejects(
        ChorusTokens.request(key, Buffer.from(challenge).toString('base64')),
        /not base64url/,
    );
    const trailing = new Uint8Array([...challenge, 0]);
    await assert.rejects(ChorusTokens.request(key, b64url(trailing)), /challenge/);
});
