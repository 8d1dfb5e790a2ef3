// Checkpoint tensors -> the canonical model (model.hpp): tensor names are
// resolved (any known prefix, gamma/beta, shards, ignored buffers), every
// shape is checked against the config, and each family's layout (Conv1D vs
// nn.Linear, fused [Q|K|V] blocks, NeoX's per-head interleaving) is moved
// into per-head blocks side by side.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "model.hpp"
#include "result.hpp"
#include "safetensors.hpp"

namespace hs {

// Builds the canonical model from a config and the checkpoint's tensors
// (any known prefix, gamma/beta, tied embeddings, buffers ignored). Tensors
// are decoded straight into the weights (through a scratch of at most a few
// hundred KB for transposes and splits), so the peak is the weights plus
// whatever holds the files; with files parsed from their headers and a
// reader (SafetensorsFile::reader) that is the weights alone. Tied
// embeddings leave W_U empty (unembed_tied).
// attention_only: read only the attention projections, their biases and the
// blocks' norms (attention_tensor): enough for every per-head weight metric,
// a fraction of the download and of the memory. The config says so
// (ModelConfig::attention_only).
struct CheckpointOptions {
  bool attention_only = false;
};
Result<Model> model_from_checkpoint(const ModelConfig& config, const std::vector<const SafetensorsFile*>& shards,
                                    const CheckpointOptions& options = {});
// Whether the checkpoint tensor `name` (as stored, any known prefix) is one
// an attention-only load reads: the attention projections (weights and
// biases) and the norms of the blocks.
bool attention_tensor(const ModelConfig& config, const std::string& name);
// Whether a load with `options` reads the checkpoint tensor `name` (as
// stored): every tensor but the registered buffers (causal masks, rotary
// caches, BERT's position_ids: SPEC §2.0), and with attention_only only the
// attention tensors.
bool checkpoint_reads_tensor(const ModelConfig& config, const std::string& name, const CheckpointOptions& options);

// The bytes of each shard that a load with `options` reads: [begin, end)
// offsets in the file (8 + N + the tensors' data offsets), adjacent tensors
// merged, in file order; one list per shard, in the order given. A reader
// that serves these ranges alone loads the model: what a download by Range
// requests fetches.
struct ByteRange {
  std::uint64_t begin = 0, end = 0;
};
std::vector<std::vector<ByteRange>> checkpoint_read_plan(const ModelConfig& config,
                                                         const std::vector<const SafetensorsFile*>& shards,
                                                         const CheckpointOptions& options = {});

// Tensor `name` (as stored) becomes one of the model's WeightMatrix members
// (the MLP's matrices, the embedding and the unembedding), which keep a
// BF16 or F16 checkpoint's 16 bits; every other weight is float32.
bool keeps_stored_precision(const ModelConfig& config, const std::string& name);

// The bytes the canonical weights of such a load take: the tensors it reads,
// 16-bit where keeps_stored_precision and the tensor is BF16 or F16, else
// float32. Known from the headers alone, before any data is fetched: the
// figure a model too large for memory is refused by.
std::uint64_t checkpoint_weight_bytes(const ModelConfig& config, const std::vector<const SafetensorsFile*>& shards,
                                      const CheckpointOptions& options = {});
// The bytes a loaded model's weights take.
std::uint64_t model_weight_bytes(const ModelWeights& weights);

// The scratch's size in float values (default 65536: 256 KB; at least one row
// is read at a time). Tests shrink it so that the row-block paths run.
extern std::int64_t checkpoint_scratch_values;

}  // namespace hs
