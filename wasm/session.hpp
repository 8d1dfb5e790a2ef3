// What the wasm module keeps for JS: one loaded model per Session, and the
// conversions between core results and JS values. Every result crosses the
// boundary one way: a plain object {ok, error, code, ...} with the core's
// snake_case field names, whose numbers are numbers, whose lists of numbers
// are JS-owned typed-array copies (Float64Array for double, Int32Array for
// int, Float32Array for float; no view of wasm memory outlives a call that
// may grow, and so detach, it — except the views load() hands its reader,
// which JS fills at once), whose lists of names are arrays of strings and
// whose records are objects. No JSON text. wasm/headscope.mjs throws the
// errors as HeadscopeError and renames the fields to camelCase, once.
#pragma once

#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "forward.hpp"
#include "geometry.hpp"
#include "interventions.hpp"
#include "model.hpp"
#include "safetensors.hpp"

namespace hs_wasm {

using emscripten::val;

// {ok: false, error: message, code: "bad_file" | ...}: the core's Error, which
// wasm/headscope.mjs throws as a HeadscopeError with that code.
inline val error_value(const hs::Error& error) {
  val out = val::object();
  out.set("ok", false);
  out.set("error", error.message);
  out.set("code", std::string(hs::error_code_name(error.code)));
  return out;
}

inline val ok_value() {
  val out = val::object();
  out.set("ok", true);
  return out;
}

template <class T>
val typed_copy(const char* array_type, const T* data, std::size_t n) {
  return val::global(array_type).new_(emscripten::typed_memory_view(n, data));
}
inline val float32_copy(const std::vector<float>& v) { return typed_copy("Float32Array", v.data(), v.size()); }
inline val float64_copy(const std::vector<double>& v) { return typed_copy("Float64Array", v.data(), v.size()); }
inline val int32_copy(const std::vector<int>& v) { return typed_copy("Int32Array", v.data(), v.size()); }

// Names (roles, classes, warnings) as an array of strings.
template <class Names>
val string_list(const Names& names) {
  val out = val::array();
  for (const auto& name : names) out.call<void>("push", std::string(name));
  return out;
}

// The model description the page and the CLI show.
val model_info(const hs::Model& model);

// One loaded model and the files it came from. The files' bytes stay in JS,
// outside wasm memory (which never shrinks). The core owns the format: JS
// hands over each file's header (add_file parses it, once), asks which byte
// ranges the load will read (read_plan), fetches them, and load() decodes
// every tensor straight into the model's weights through a JS callback that
// copies a byte range into wasm memory. The peak is the weights plus a
// scratch of a few hundred KB.
class Session {
 public:
  // Parses the first 8 + N bytes (`header`, a Uint8Array) of weight file
  // `name` of `size` bytes, and keeps the tensor table for load().
  val add_file(const std::string& name, val header, double size);
  // The byte ranges of every added file that load() with the same config and
  // options will read: {ok, files: [{name, ranges: Float64Array [begin, end,
  // begin, end, ...]}]} (file offsets, adjacent tensors merged).
  val read_plan(const std::string& config_json, val options);
  // Builds the model from config.json text and every added .safetensors file
  // (a single file or all shards): {ok, info (model_info)}. `read(name,
  // offset, view)` fills the Uint8Array `view` (in wasm memory) with bytes
  // [offset, offset + view.length) of file `name` and returns undefined, or
  // an error message. It runs synchronously and must not call the module.
  // options: {attention_only: bool} (hs::CheckpointOptions).
  val load(const std::string& config_json, val read, val options);
  val info() const;
  // Runs the model on token ids. options: {head_gate?: number[L*H],
  // want_hidden?, want_logits?}.
  val run(val ids, val options);
  void clear_files() { files_.clear(); }

  const hs::Model* model() const { return model_.get(); }

  // Weight edits (OV edits, merges) in force for every later run, until undone.
  hs::ModelEdits edits;

 private:
  std::map<std::string, hs::SafetensorsFile> files_;  // parsed headers, by file name
  std::unique_ptr<hs::Model> model_;
};

}  // namespace hs_wasm
