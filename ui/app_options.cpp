#include "app_options.h"

#include <QCommandLineParser>
#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

#include "method_registry.h"
#include "qt_types.h"
#include "quantzoo_config.h"

namespace qz::ui {

QString dataPath(const QString& relative) {
    static const QString dir = [] {
        const QString besideExe = QDir::cleanPath(QCoreApplication::applicationDirPath() +
                                                  QStringLiteral("/" QZ_DATA_DIR_FROM_BIN));
        if (QFileInfo(besideExe).isDir()) return besideExe;
        const QString xdg = QStandardPaths::locate(
            QStandardPaths::GenericDataLocation, QStringLiteral("quantzoo"), QStandardPaths::LocateDirectory);
        return xdg.isEmpty() ? besideExe : xdg;  // missing: errors then name the expected place
    }();
    return dir + QLatin1Char('/') + relative;
}

QString demoModelPath() { return dataPath(QStringLiteral("demo/stories260K")); }

QString sampleTextPath() { return dataPath(QStringLiteral("texts/shakespeare-valid.txt")); }

namespace {
qz::Result<int> intOption(const QCommandLineParser& p, const QString& name, int lo, int hi) {
    bool ok = false;
    const int v = p.value(name).toInt(&ok);
    if (!ok || v < lo || v > hi)
        return qz::makeError(toStd(QStringLiteral("--%1 expects an integer %2..%3, got '%4'")
                                       .arg(name).arg(lo).arg(hi).arg(p.value(name))));
    return v;
}
}  // namespace

qz::Result<AppOptions> parseAppOptions(const QStringList& arguments) {
    QStringList methods;
    for (const auto& d : MethodRegistry::instance().methods())
        if (d.available()) methods << d.id;
    QCommandLineParser p;
    p.setApplicationDescription(QStringLiteral("QuantZoo — quantize language models and compare the results."));
    p.addPositionalArgument(QStringLiteral("model"), QStringLiteral("HF folder, .safetensors or .gguf file"),
                            QStringLiteral("[MODEL]"));
    const auto opt = [&](const char* name, const QString& help, const char* value = nullptr) {
        p.addOption(value ? QCommandLineOption(QString::fromLatin1(name), help, QString::fromLatin1(value))
                          : QCommandLineOption(QString::fromLatin1(name), help));
    };
    opt("headless", QStringLiteral("run without a window; needs --report-dir"));
    opt("report-dir", QStringLiteral("folder for report.json, report.md and histogram PNGs"), "DIR");
    opt("screenshot", QStringLiteral("show the window offscreen, run the job, save a PNG of it, exit"), "FILE");
    opt("compare", QStringLiteral("with --screenshot: open this comparison (quantzoo-cli compare --report) and grab the Compare workspace; with --screenshots: grab its histograms, per-layer chart and table"), "PROJECT");
    opt("screenshots", QStringLiteral("show the window offscreen and save PNGs of the Teaching views on MODEL (or, with --compare, of the Compare views) into DIR, exit"), "DIR");
    opt("exl2-measurement", QStringLiteral("with --screenshots: the EXL2 teaching view from this measurement.json of MODEL (4.0 bpw)"), "FILE");
    opt("method", QStringLiteral("quantization method: ") + methods.join(QStringLiteral(", ")), "NAME");
    opt("bits", QStringLiteral("bits per weight, 2..8 (default 8)"), "N");
    opt("granularity", QStringLiteral("tensor, row or group (default tensor)"), "G");
    opt("group-size", QStringLiteral("values per group for --granularity group (default 128)"), "N");
    opt("tensors", QStringLiteral("all or 2d (default 2d: all 2-D weights)"), "WHICH");
    opt("regex", QStringLiteral("quantize the tensors whose name matches this ECMAScript regex"), "RE");
    opt("names", QStringLiteral("quantize these tensors (comma-separated names)"), "LIST");
    opt("bins", QStringLiteral("bins of the whole-model histogram (default 150)"), "N");
    opt("range", QStringLiteral("range of the whole-model histogram (default -2,2)"), "LO,HI");
    opt("tensor-bins", QStringLiteral("bins of the per-tensor histograms (default 150)"), "N");
    p.addHelpOption();
    p.addVersionOption();

    AppOptions o;
    if (!p.parse(arguments)) return qz::makeError(toStd(p.errorText()));
    o.helpText = p.helpText();
    o.showHelp = p.isSet(QStringLiteral("help"));
    o.showVersion = p.isSet(QStringLiteral("version"));
    const QStringList pos = p.positionalArguments();
    if (pos.size() > 1) return qz::makeError("more than one model given: " + toStd(pos.join(QLatin1Char(' '))));
    if (!pos.isEmpty()) o.modelPath = pos.front();
    o.headless = p.isSet(QStringLiteral("headless"));
    o.reportDir = p.value(QStringLiteral("report-dir"));
    o.screenshot = p.value(QStringLiteral("screenshot"));
    o.compareProject = p.value(QStringLiteral("compare"));
    o.screenshotDir = p.value(QStringLiteral("screenshots"));
    o.exl2Measurement = p.value(QStringLiteral("exl2-measurement"));
    if (!o.compareProject.isEmpty() && o.screenshot.isEmpty() && o.screenshotDir.isEmpty())
        return qz::makeError("--compare needs --screenshot FILE or --screenshots DIR");
    if (!o.screenshot.isEmpty() && !o.screenshotDir.isEmpty())
        return qz::makeError("--screenshot and --screenshots exclude each other");
    if (!o.exl2Measurement.isEmpty() && o.screenshotDir.isEmpty())
        return qz::makeError("--exl2-measurement needs --screenshots DIR");
    if (o.headless && o.reportDir.isEmpty()) return qz::makeError("--headless needs --report-dir DIR");

    auto& spec = o.params.spec;
    for (const char* n : {"method", "bits", "granularity", "group-size", "tensors", "regex", "names", "bins",
                          "range", "tensor-bins"})
        if (p.isSet(QString::fromLatin1(n))) o.quantChoicesGiven = true;
    if (p.isSet(QStringLiteral("method"))) {
        const auto* d = MethodRegistry::instance().find(p.value(QStringLiteral("method")));
        if (!d || !d->simple)
            return qz::makeError("unknown --method '" + toStd(p.value(QStringLiteral("method"))) +
                                 "' (known: " + toStd(methods.join(QStringLiteral(", "))) + ")");
        spec.method = *d->simple;
    }
    if (p.isSet(QStringLiteral("bits"))) {
        auto v = intOption(p, QStringLiteral("bits"), 2, 8);
        if (!v) return v.error();
        spec.bits = *v;
    }
    if (p.isSet(QStringLiteral("granularity"))) {
        auto g = qz::parseGranularity(toStd(p.value(QStringLiteral("granularity")).toLower()));
        if (!g) return qz::makeError("unknown --granularity '" + toStd(p.value(QStringLiteral("granularity"))) +
                                     "' (tensor, row, group)");
        spec.granularity = *g;
    }
    if (p.isSet(QStringLiteral("group-size"))) {
        auto v = intOption(p, QStringLiteral("group-size"), 1, 1 << 20);
        if (!v) return v.error();
        spec.groupSize = *v;
    }
    if (auto st = spec.validate(); !st) return st.error();

    auto& f = o.params.filter;
    const QString which = p.value(QStringLiteral("tensors")).toLower();
    if (which == QLatin1String("all")) f.mode = qz::TensorSelection::All;
    else if (which.isEmpty() || which == QLatin1String("2d")) f.mode = qz::TensorSelection::All2D;
    else return qz::makeError("unknown --tensors '" + toStd(which) + "' (all, 2d)");
    if (p.isSet(QStringLiteral("regex"))) {
        f.mode = qz::TensorSelection::Regex;
        f.regex = toStd(p.value(QStringLiteral("regex")));
    }
    if (p.isSet(QStringLiteral("names"))) {
        f.mode = qz::TensorSelection::Names;
        for (const QString& n : p.value(QStringLiteral("names")).split(QLatin1Char(','), Qt::SkipEmptyParts))
            f.names.push_back(toStd(n.trimmed()));
    }
    if (p.isSet(QStringLiteral("bins"))) {
        auto v = intOption(p, QStringLiteral("bins"), 1, 100000);
        if (!v) return v.error();
        o.params.modelHistogram.bins = *v;
    }
    if (p.isSet(QStringLiteral("tensor-bins"))) {
        auto v = intOption(p, QStringLiteral("tensor-bins"), 1, 100000);
        if (!v) return v.error();
        o.params.tensorBins = *v;
    }
    if (p.isSet(QStringLiteral("range"))) {
        const QStringList parts = p.value(QStringLiteral("range")).split(QLatin1Char(','));
        bool ok1 = false, ok2 = false;
        const double lo = parts.size() == 2 ? parts[0].toDouble(&ok1) : 0;
        const double hi = parts.size() == 2 ? parts[1].toDouble(&ok2) : 0;
        if (!ok1 || !ok2 || !(hi > lo)) return qz::makeError("--range expects LO,HI with LO < HI");
        o.params.modelHistogram.lo = lo;
        o.params.modelHistogram.hi = hi;
        o.params.modelHistogram.mode = qz::HistogramRangeMode::Fixed;
    }
    return o;
}

}  // namespace qz::ui
