// quantzoo-cli subcommands. Each returns the process exit code:
//   0 success, 1 failure (one-line reason on stderr), 2 usage error, 130 cancelled by Ctrl-C.
#pragma once

namespace qzcli {

enum ExitCode { kOk = 0, kFailed = 1, kUsage = 2, kCancelled = 130 };

// Text inputs (-f) larger than this are refused (1 GiB, as the calibration text of the exporters).
constexpr unsigned long long kMaxTextBytes = 1ull << 30;

int cmdInfo(int argc, char** argv);
int cmdQuantize(int argc, char** argv);
int cmdExport(int argc, char** argv);
// `export --format gptq ...` (app/cli/cmd_export_gptq.cpp): parses its own options from argv[2..].
int cmdExportGptq(int argc, char** argv);
// `export --format exl2 ...` (app/cli/cmd_export_exl2.cpp).
int cmdExportExl2(int argc, char** argv);
// Evaluation (app/cli/cmd_perplexity.cpp, cmd_generate.cpp, cmd_imatrix.cpp).
int cmdPerplexity(int argc, char** argv);
int cmdGenerate(int argc, char** argv);
int cmdImatrix(int argc, char** argv);
// Variants side by side (app/cli/cmd_compare.cpp).
int cmdCompare(int argc, char** argv);

}  // namespace qzcli
