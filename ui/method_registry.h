// The catalogue of quantization methods the method panel offers. The panel is built from these
// descriptors (name, help text, bit range, granularities), so a new method (GGUF block types, GPTQ,
// NF4, LLM.int8 ...) is added by registering a descriptor, not by editing the panel.
//
// Today every method maps onto the engine's simple round-to-nearest quantizer (qz::QuantSpec);
// descriptors without a `simple` method are listed but disabled until their engine job exists.
#pragma once

#include <QList>
#include <QString>
#include <functional>
#include <optional>

#include "quant/simple_quant.h"

class QWidget;

namespace qz::ui {

class MethodOptionsEditor;

struct MethodDescriptor {
    QString id;                 // stable key, used on the command line and in settings ("absmax")
    QString displayName;        // "Absmax (symmetric)"
    QString description;        // one or two sentences for the tooltip / help label
    int minBits = 2, maxBits = 8, defaultBits = 8;
    QList<qz::Granularity> granularities;   // empty: the method fixes its own layout
    std::optional<qz::QuantMethod> simple;  // engine method for qz::runQuantize, if any
    // Optional editor of the method's own options (method_options_editor.h), shown by the panel.
    std::function<MethodOptionsEditor*(QWidget* parent)> createOptions;
    bool available() const { return simple.has_value(); }
};

class MethodRegistry {
public:
    static MethodRegistry& instance();   // holds the built-in methods

    void add(const MethodDescriptor& d);  // replaces a descriptor with the same id
    const QList<MethodDescriptor>& methods() const { return m_methods; }
    const MethodDescriptor* find(const QString& id) const;
    const MethodDescriptor* find(qz::QuantMethod m) const;

private:
    MethodRegistry();
    QList<MethodDescriptor> m_methods;
};

QString granularityLabel(qz::Granularity g);   // "Per tensor", "Per row", "Per group"

}  // namespace qz::ui
