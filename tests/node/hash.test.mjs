// The page's URL fields (web/state/hash.js): the corpus field's strict
// parsing and its round trip.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseHash, serializeHash } from '../../web/state/hash.js';

const ORIGIN = 'https://example.org';

test('corpus=NAME:TEXTS:TOKENS names a built-in corpus, its size and token window, and round-trips', () => {
  const { state, problems } = parseHash('#view=model&corpus=stories:12:48', ORIGIN);
  assert.deepEqual(problems, []);
  assert.deepEqual(state.corpus, { name: 'stories', texts: 12, tokens: 48 });
  assert.equal(serializeHash(state), 'view=model&corpus=stories%3A12%3A48');
  assert.deepEqual(parseHash(`#${serializeHash(state)}`, ORIGIN).state.corpus, state.corpus);
  assert.equal(parseHash('#', ORIGIN).state.corpus, null);
  const hub = parseHash('#corpus=hf:owner/my-data:wikitext-2-raw-v1:test:32:64', ORIGIN).state.corpus;
  assert.deepEqual(hub, { dataset: 'owner/my-data', config: 'wikitext-2-raw-v1', split: 'test', texts: 32, tokens: 64 });
  assert.deepEqual(parseHash(`#${serializeHash({ ...parseHash('#', ORIGIN).state, corpus: hub })}`, ORIGIN).state.corpus, hub);
  for (const bad of ['nosuch:12:48', 'stories:0:48', 'stories:1:48', 'stories:12:1', 'stories:1001:48', 'stories:12:2000', 'stories:12', 'stories:1e2:48', '../x:1:2', 'hf:owner/x:default:../y:4:8', 'hf:nobody:default:train:4:8', 'hf:a/b:c:d:1:8']) {
    const parsed = parseHash(`#corpus=${encodeURIComponent(bad)}`, ORIGIN);
    assert.equal(parsed.state.corpus, null, bad);
    assert.match(parsed.problems.join(' '), /ignored corpus=/, bad);
  }
});

test('over=corpus asks for a text statistic\'s mean over the corpus, and only text or corpus are read', () => {
  const { state, problems } = parseHash('#metric=induction&over=corpus&corpus=stories:12:48', ORIGIN);
  assert.deepEqual(problems, []);
  assert.equal(state.over, 'corpus');
  assert.equal(serializeHash(state), 'metric=induction&over=corpus&corpus=stories%3A12%3A48');
  assert.equal(parseHash('#', ORIGIN).state.over, 'text');
  assert.equal(serializeHash(parseHash('#over=text', ORIGIN).state), '');
  const bad = parseHash('#over=everything', ORIGIN);
  assert.equal(bad.state.over, 'text');
  assert.match(bad.problems.join(' '), /ignored over=/);
});
