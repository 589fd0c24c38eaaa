// The GUI on a Llama-2-7B-shaped model, offscreen: how long opening takes until the model tree is
// populated and the first tensor's histogram is shown, and how the model-wide histogram streams (how many
// progress updates, the time to the first one, the time to the whole histogram). The requirement: opening,
// the tree and the first histogram under 1 s; the model-wide histogram streams with progress.
//
// The model is bench_synthetic_llama.h's synthetic Llama (hidden 4096, ffn 11008, vocab 32000, 32 heads,
// BF16, sharded safetensors) with few layers: opening must not depend on depth, so 2 layers measure it
// (--layers 2,8 shows that the open figures do not grow with depth; the model-wide histogram does).
// References measured in the same run: the core's qz::openModel alone (what the GUI adds to it) and one
// sequential read of every shard (what streaming the model-wide histogram cannot beat).
//
// Usage: bench_gui_open [--layers 2[,8]] [--tmp DIR] [--keep]
// The models are written under --tmp (default: the system temporary folder; 1.3 GB for 2 layers, 3.3 GB
// for 8) and removed at the end unless --keep. The page cache is warm (the model was just written).
#include <QApplication>
#include <QElapsedTimer>
#include <QStandardPaths>
#include <QThread>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_synthetic_llama.h"
#include "main_window.h"
#include "model_histogram_job.h"
#include "model_tree.h"

namespace fs = std::filesystem;
using namespace qzbench;

namespace {

std::vector<int64_t> parseList(const std::string& s) {
    std::vector<int64_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(std::atoll(item.c_str()));
    return out;
}

// Reads every file under dir once (the I/O reference for the model-wide histogram).
double readAllSeconds(const std::string& dir, uint64_t* bytes) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<char> buf(8 << 20);
    *bytes = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() != ".safetensors") continue;
        std::ifstream f(e.path(), std::ios::binary);
        while (f.read(buf.data(), std::streamsize(buf.size())) || f.gcount() > 0)
            *bytes += uint64_t(f.gcount());
    }
    return secondsSince(t0);
}

// Runs the event loop until done() or the timeout; false on timeout.
template <class Done> bool waitFor(Done done, int timeoutMs) {
    QElapsedTimer t;
    t.start();
    while (!done()) {
        if (t.elapsed() > timeoutMs) return false;
        QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
        QThread::usleep(200);
    }
    return true;
}

struct GuiTimes {
    double open = -1, tree = -1, firstHistogram = -1, wholeHistogram = -1;
    int treeTensors = 0;
    int progressUpdates = 0;
    double firstProgress = -1, modelHistogram = -1;
};

GuiTimes measure(const std::string& dir) {
    GuiTimes g;
    qz::ui::MainWindow w;
    w.resize(1400, 900);
    w.show();
    QElapsedTimer timer;
    QObject::connect(w.modelHistogramJob(), &qz::ui::ModelHistogramJob::progress, &w, [&](double) {
        if (g.progressUpdates++ == 0) g.firstProgress = double(timer.nsecsElapsed()) * 1e-9;
    });
    QObject::connect(&w, &qz::ui::MainWindow::modelOpened, &w, [&] {
        g.open = double(timer.nsecsElapsed()) * 1e-9;
        g.treeTensors = w.modelTree()->tensorCount(); // populated in the same slot as the open
        g.tree = double(timer.nsecsElapsed()) * 1e-9;
    });
    QObject::connect(&w, &qz::ui::MainWindow::tensorPreviewShown, &w, [&] {
        if (g.firstHistogram < 0) g.firstHistogram = double(timer.nsecsElapsed()) * 1e-9;
    });
    QObject::connect(&w, &qz::ui::MainWindow::tensorShown, &w, [&] {
        if (g.wholeHistogram < 0) g.wholeHistogram = double(timer.nsecsElapsed()) * 1e-9;
        if (g.firstHistogram < 0) g.firstHistogram = g.wholeHistogram;
    });
    QObject::connect(w.modelHistogramJob(), &qz::ui::ModelHistogramJob::ready, &w,
                     [&] { g.modelHistogram = double(timer.nsecsElapsed()) * 1e-9; });
    timer.start();
    w.openPath(QString::fromStdString(dir));
    if (!waitFor([&] { return g.open >= 0; }, 120000)) std::fprintf(stderr, "  the model did not open\n");
    if (!waitFor([&] { return g.wholeHistogram >= 0; }, 120000))
        std::fprintf(stderr, "  no tensor histogram was shown\n");
    if (!waitFor([&] { return g.modelHistogram >= 0; }, 600000))
        std::fprintf(stderr, "  the model-wide histogram did not finish\n");
    return g;
}

} // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
    std::vector<int64_t> depths = {2};
    std::string tmpRoot = fs::temp_directory_path().string();
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--layers" && i + 1 < argc)
            depths = parseList(argv[++i]);
        else if (a == "--tmp" && i + 1 < argc)
            tmpRoot = argv[++i];
        else if (a == "--keep")
            keep = true;
        else if (a.rfind("-platform", 0) == 0)
            ++i;
        else {
            std::fprintf(stderr, "unknown option %s (see the comment at the top of bench_gui_open.cpp)\n",
                         a.c_str());
            return 2;
        }
    }
    QApplication app(argc, argv);
    QStandardPaths::setTestModeEnabled(true); // the recent-files list goes to a test location
    QCoreApplication::setOrganizationName(QStringLiteral("QuantZooBench"));

    LlamaShape shape;
    shape.hidden = 4096;
    shape.ffn = 11008;
    shape.vocab = 32000;
    shape.heads = 32;
    shape.kvHeads = 32;
    const std::string root = tmpRoot + "/qz-bench-gui-open-" + std::to_string(getpid());
    const std::string tokDir = sourceDir() + "/../data/models/bard-llama";
    std::printf("bench_gui_open: Llama-2-7B shape (hidden 4096, ffn 11008, vocab 32000), BF16, offscreen\n");
    std::printf("%6s %8s %9s %9s %9s %10s %10s %9s %8s %11s %12s %11s\n", "layers", "MiB", "core open",
                "GUI open", "tree", "first hist", "whole hist", "GUI/core", "updates", "1st update",
                "model hist", "read once");
    int status = 0;
    for (int64_t layers : depths) {
        shape.layers = layers;
        const std::string dir = root + "/llama-7b-shape-" + std::to_string(layers);
        if (auto st = writeSyntheticLlama(dir, shape, qz::DType::BF16, 1000ull << 20, tokDir); !st) {
            std::fprintf(stderr, "cannot write the model: %s\n", st.error().message.c_str());
            return 1;
        }
        uint64_t bytes = 0;
        const double readOnce = readAllSeconds(dir, &bytes);
        double coreOpen = 0;
        {
            const auto t0 = std::chrono::steady_clock::now();
            auto core = qz::openModel(dir);
            coreOpen = secondsSince(t0);
            if (!core) {
                std::fprintf(stderr, "cannot open the model: %s\n", core.error().message.c_str());
                return 1;
            }
        }
        const GuiTimes g = measure(dir);
        std::printf("%6lld %8.0f %9.3f %9.3f %9.3f %10.3f %10.2f %9.1f %8d %11.3f %12.2f %11.2f\n",
                    static_cast<long long>(layers), mib(double(bytes)), coreOpen, g.open, g.tree,
                    g.firstHistogram, g.wholeHistogram, coreOpen > 0 ? g.open / coreOpen : 0.0,
                    g.progressUpdates, g.firstProgress, g.modelHistogram, readOnce);
        std::printf("       tree: %d tensors; %s\n", g.treeTensors,
                    g.open >= 0 && g.firstHistogram >= 0 && g.firstHistogram < 1.0 && g.tree < 1.0
                        ? "open, tree and first histogram under 1 s"
                        : "OVER 1 s");
        if (!(g.firstHistogram >= 0 && g.firstHistogram < 1.0)) status = 1;
        if (!keep) fs::remove_all(dir);
    }
    if (!keep) fs::remove_all(root);
    return status;
}
