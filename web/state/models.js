// The models the page offers besides the built-in one (shared/sources.js):
// a curated list of small Hugging Face models headscope supports, with sizes
// (the approximate download of the safetensors weights, what the progress
// bar will count, as published on the hub; labelled approximate because
// repositories change), the example texts, and how models and sizes are
// named for people.
import { BUILTIN } from '../shared/sources.js';

export const CURATED = [
  { repo: 'gpt2', bytes: 548e6, note: 'GPT-2 small, 12 × 12 heads, F32' },
  { repo: 'distilgpt2', bytes: 353e6, note: '6 × 12 heads, F32' },
  { repo: 'EleutherAI/pythia-70m', bytes: 166e6, note: '6 × 8 heads, rotary' },
  { repo: 'EleutherAI/pythia-160m', bytes: 375e6, note: '12 × 12 heads, rotary' },
  { repo: 'roneneldan/TinyStories-1M', bytes: 15e6, note: 'GPT-Neo, 8 layers; safetensors may only exist on a refs/pr/N revision' },
  { repo: 'roneneldan/TinyStories-33M', bytes: 291e6, note: 'GPT-Neo, 4 layers × 16 heads; safetensors on main' },
  { repo: 'HuggingFaceTB/SmolLM-135M', bytes: 269e6, note: 'LLaMA-style, GQA, BF16' },
  { repo: 'HuggingFaceTB/SmolLM2-135M', bytes: 269e6, note: 'LLaMA-style, 30 × 9 heads, GQA, BF16' },
  { repo: 'HuggingFaceTB/SmolLM2-360M', bytes: 724e6, note: 'LLaMA-style, 32 × 15 heads, GQA, BF16' },
  { repo: 'Qwen/Qwen2.5-0.5B', bytes: 988e6, note: 'Qwen2: q/k/v biases, 24 × 14 heads, GQA, BF16' },
  { repo: 'Qwen/Qwen3-0.6B', bytes: 1.5e9, note: 'Qwen3: per-head q/k norm, 28 × 16 heads, GQA, BF16; float32 in the page (~3 GB): use "attention weights only" if it does not fit' },
  { repo: 'google/gemma-3-270m', bytes: 536e6, note: 'Gemma 3: local/global RoPE, q/k norm, 18 × 4 heads, MQA, BF16; gated: accept the licence on huggingface.co and give an access token' },
  { repo: 'google/gemma-3-1b-pt', bytes: 2.0e9, note: 'Gemma 3, 26 × 4 heads, MQA, BF16; gated (token); float32 in the page (~4 GB): use "attention weights only" if it does not fit' },
  { repo: 'meta-llama/Llama-3.2-1B', bytes: 2.47e9, note: 'Llama 3.2: llama3 RoPE scaling, 16 × 32 heads, GQA, BF16; gated (token); use "attention weights only" if it does not fit' },
  { repo: 'stabilityai/stablelm-2-1_6b', bytes: 3.29e9, note: 'StableLM 2: LayerNorm, 25 % rotary, 24 × 32 heads, BF16; use "attention weights only" if it does not fit' },
  { repo: 'microsoft/Phi-3.5-mini-instruct', bytes: 7.64e9, note: 'Phi-3.5: fused projections, LongRoPE, 32 × 32 heads, 3.8 B: "attention weights only" in the page' },
  { repo: 'bert-base-uncased', bytes: 440e6, note: 'bidirectional encoder, no LM loss' },
  { repo: 'facebook/opt-125m', bytes: 251e6, note: '12 × 12 heads, F16' },
];

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return '?';
  if (bytes < 1e3) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

// Describes state.model for people: 'built-in', 'gpt2 @ main', a URL.
export function modelLabel(model, rev) {
  if (model === 'builtin') return BUILTIN.title;
  if (model === 'local') return 'local files';
  if (/^[a-z]+:/i.test(model)) return model;
  return rev && rev !== 'main' ? `${model} @ ${rev}` : model;
}

// The example texts of the text panel. The first is the default.
export const EXAMPLES = [
  {
    id: 'induction',
    title: 'Repeated text (induction)',
    text: 'The quick brown fox jumps over the lazy dog near the old mill. The quick brown fox jumps over the lazy dog near the old mill.',
  },
  {
    id: 'names',
    title: 'Repeated names',
    text: 'When Mary and John went to the store, John gave a drink to Mary. Later, Anna and Peter met at the park, and Peter handed the ball to Anna.',
  },
  {
    id: 'long',
    title: 'A long sentence',
    text: 'Although the committee had spent most of the long and rainy afternoon arguing about the budget, the new library that the town had wanted for years was finally approved just before the lights went out.',
  },
];
