// Placeholder until the GPTQ exporter lands (issue: GPTQ).
#include <cstdio>

#include "commands.h"

namespace qzcli {

int cmdExportGptq(int, char**) {
    std::fprintf(stderr, "quantzoo-cli: GPTQ export is not available yet\n");
    return kFailed;
}

}  // namespace qzcli
