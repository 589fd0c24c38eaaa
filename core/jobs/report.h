// Reports of a quantization run: JSON (machine-readable, every tensor by its name in the model file)
// and Markdown (for people).
#pragma once

#include <string>

#include "common/file_util.h"  // writeFileAtomic, used with the reports
#include "jobs/quantize_job.h"

namespace qz {

std::string reportJson(const Model& model, const QuantizeResult& r);
std::string reportMarkdown(const Model& model, const QuantizeResult& r);

}  // namespace qz
