// The Catch2 runner, with one option of ours: `--kernels portable` runs the
// core on the path of a CPU without AVX2 + FMA (HEADSCOPE_KERNELS, read by
// core/kernels.cpp), so that ctest covers both paths on any machine.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

int main(int argc, char* argv[]) {
  Catch::Session session;
  std::string kernels;
  using namespace Catch::clara;
  session.cli(session.cli() | Opt(kernels, "auto|portable")["--kernels"](
                                  "native kernels: as the CPU allows (auto) or without AVX2 + FMA (portable)"));
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  if (kernels == "portable") {
    setenv("HEADSCOPE_KERNELS", "portable", 1);
  } else if (!kernels.empty() && kernels != "auto") {
    Catch::cerr() << "--kernels: expected auto or portable, got " << kernels << "\n";
    return 2;
  }
  return session.run();
}
