// Reading llama.cpp's golden per-tensor tables (tests/data/golden/*/tensors.tsv).
// bard-llama's table has a header (dir file file_sha256 idx tensor type ne n_elements n_bytes
// data_offset sha256); bard-gpt2's and stories260K's have none (file tensor type_id ne sha256).
#pragma once

#include <QFile>
#include <QString>
#include <QStringList>

#include <string>
#include <vector>

namespace golden {

struct Entry {
    std::string dir, file, tensor, type, ne, sha256;
    int idx = -1;
};

inline std::vector<Entry> load(const QString& tsvPath) {
    std::vector<Entry> out;
    QFile f(tsvPath);
    if (!f.open(QIODevice::ReadOnly)) return out;
    bool header = false;
    QStringList cols;
    int line = 0;
    while (!f.atEnd()) {
        const QString l = QString::fromUtf8(f.readLine()).trimmed();
        const QStringList c = l.split(QLatin1Char('\t'));
        if (line++ == 0 && c.value(0) == QLatin1String("dir")) {
            header = true;
            cols = c;
            continue;
        }
        Entry e;
        if (header) {
            e.dir = c.value(cols.indexOf(QStringLiteral("dir"))).toStdString();
            e.file = c.value(cols.indexOf(QStringLiteral("file"))).toStdString();
            e.tensor = c.value(cols.indexOf(QStringLiteral("tensor"))).toStdString();
            e.type = c.value(cols.indexOf(QStringLiteral("type"))).toStdString();
            e.ne = c.value(cols.indexOf(QStringLiteral("ne"))).toStdString();
            e.sha256 = c.value(cols.indexOf(QStringLiteral("sha256"))).toStdString();
            e.idx = c.value(cols.indexOf(QStringLiteral("idx"))).toInt();
        } else if (c.size() >= 5) {
            e.file = c[0].toStdString();
            e.tensor = c[1].toStdString();
            e.type = c[2].toStdString();  // ggml type id
            e.ne = c[3].toStdString();
            e.sha256 = c[4].toStdString();
        }
        out.push_back(e);
    }
    return out;
}

// Entries of one golden file. bard-llama's table also lists the same files re-made from the BF16
// source (dir "from-bf16", identical bytes); those rows are left out.
inline std::vector<Entry> forFile(const std::vector<Entry>& all, const std::string& file) {
    std::vector<Entry> out;
    for (const auto& e : all)
        if (e.file == file && e.dir != "from-bf16") out.push_back(e);
    return out;
}

}  // namespace golden
