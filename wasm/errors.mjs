// The one error class of the JS API. `code` says what went wrong, for callers
// to branch on; `message` is for people. The core's codes (core/result.hpp
// ErrorCode, named by error_code_name) cross the boundary as they are; the
// JS side adds its own:
//   invalid_argument  a call's own argument (ids, head indices, options, names)
//   bad_file          a file breaks its format's rules (safetensors, JSON, tokenizer)
//   bad_config        config.json is malformed or inconsistent
//   unsupported       valid, but not something headscope handles
//   bad_checkpoint    the tensors do not fit the config
//   too_large         over a limit: the context, the tensor count, the memory
//   cancelled         the caller cancelled (a download, a long computation)
//   out_of_memory     an allocation failed
//   no_model          the call needs a loaded model
//   missing_file      a file the model needs is not in its folder (config.json)
//   missing_weights   the folder has no .safetensors weights (perhaps only pytorch_model.bin)
//   no_tokenizer      text was given to a model without a tokenizer
//   network           a download failed (status, connection, a short or long body)
//   not_allowed       a model address the page's policy refuses
//   engine_stopped    the wasm core could not start, or aborted
export class HeadscopeError extends Error {
  constructor(message, code = 'invalid_argument') {
    super(message);
    this.name = 'HeadscopeError';
    this.code = code;
  }
}
