// libFuzzer harness: exllamav2's measurement.json as the EXL2 exporter reads it (core/exl2), validated
// against the plan of the bard-llama test model (tests/data/models/bard-llama).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "exl2/exl2_measure.h"
#include "fuzz_util.h"
#include "io/hf_folder.h"

namespace {
const qz::exl2::ModelPlan& plan() {
    static const qz::exl2::ModelPlan p = [] {
        auto model = qz::openHfFolder(qzfuzz::testData() + "/models/bard-llama");
        if (!model) {
            std::fprintf(stderr, "fuzz_exl2_measurement: %s\n", model.error().message.c_str());
            std::abort();
        }
        auto pl = qz::exl2::planModel(**model);
        if (!pl) {
            std::fprintf(stderr, "fuzz_exl2_measurement: %s\n", pl.error().message.c_str());
            std::abort();
        }
        return *pl;
    }();
    return p;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto& p = plan();
    auto m = qz::exl2::parseMeasurementJson(std::string(reinterpret_cast<const char*>(data), size), p,
                                            "measurement.json");
    if (m && m->size() != p.modules.size()) __builtin_trap();
    return 0;
}
