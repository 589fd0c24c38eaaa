// A fake-quantized variant's weights as engine row sources (infer/weight_source.h): each tensor's rows
// are re-made on demand from the original's stored rows (mapped, in their stored type) by the variant's
// deterministic method, with what the method decided for the whole tensor kept beside them: nothing for
// per-row and per-group absmax / zero-point (a Conv1D weight: their parameters) and LLM.int8() (its
// outlier features are the variant's), the one scale and zero point of a per-tensor run, the block absmax and decoded block scales of NF4 / FP4
// (2 floats per block). The values equal the method's dequantized tensor (jobs/quantize_job.h
// analyzeTensor) bit for bit: the same functions on the same inputs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/result.h"
#include "infer/weight_source.h"
#include "model/model.h"
#include "quant/simple_quant.h"

namespace qz {

// Whether fakeQuantRowSource can serve t by rows (a 2-D weight stored [out, in] in a type read row by
// row, or a GPT-2 Conv1D weight stored [in, out] in a type of one value per element, served transposed);
// otherwise a variant of it is made whole as F32 (a memory estimate counts those values).
bool readableByRows(const TensorInfo& t);

// The source of original.tensors[index] under spec (LLM.int8(): with these outlier features). nullptr
// when the tensor is not a 2-D weight read by rows (other ranks, a stored type that cannot be read row by
// row): the caller then makes the tensor whole. A GPT-2 Conv1D weight's source is transposed
// (WeightRowSource::transposed): rows of [out, in], each made from a contiguous piece of every stored row,
// with the parameters of its stored rows or groups held (8 bytes per group; a per-tensor run: one).
// Tensor-wide parameters are computed here (one pass over the tensor; NF4 / FP4 hold it whole once).
Result<std::shared_ptr<const WeightRowSource>>
fakeQuantRowSource(const std::shared_ptr<const Model>& original, size_t index, const QuantSpec& spec,
                   const std::vector<int32_t>& outlierFeatures);

} // namespace qz
