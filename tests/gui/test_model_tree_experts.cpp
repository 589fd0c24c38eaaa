// The model tree of a mixture-of-experts model: each layer's per-expert tensors (Hugging Face layout,
// qwen3_moe's "mlp.experts.E.*" and mixtral's "block_sparse_moe.experts.E.*") are grouped under
// "Experts (N)" → "Expert e"; selecting a group selects every tensor under it; finding a tensor opens
// its groups. The model is built in memory (the tree reads names, shapes, types and sizes only), so the
// expected counts and sums below are written by hand from the list of tensors.
#include <QTest>

#include "model/model.h"
#include "model/tensor_names.h"
#include "model_tree.h"

using namespace qz::ui;

namespace {
qz::TensorInfo tensor(const std::string& name, std::vector<int64_t> shape) {
    qz::TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = qz::DType::F32;
    t.nbytes = t.numel() * 4;
    return t;
}

// 2 layers × (attention q, router, 3 experts × gate/up/down); layer 1 uses mixtral's names.
std::shared_ptr<qz::Model> moeModel() {
    auto m = std::make_shared<qz::Model>();
    m->name = "tiny-moe";
    m->tensors.push_back(tensor("model.embed_tokens.weight", {100, 8}));
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        m->tensors.push_back(tensor(p + "self_attn.q_proj.weight", {8, 8}));
        const std::string moe = l == 0 ? "mlp." : "block_sparse_moe.";
        m->tensors.push_back(tensor(p + moe + "gate.weight", {3, 8}));
        for (int e = 0; e < 3; ++e) {
            const std::string x = p + moe + "experts." + std::to_string(e) + ".";
            const char* names[2][3] = {{"gate_proj", "up_proj", "down_proj"}, {"w1", "w3", "w2"}};
            for (int k = 0; k < 3; ++k)
                m->tensors.push_back(tensor(x + names[l][k] + ".weight", k == 2 ? std::vector<int64_t>{8, 4}
                                                                                : std::vector<int64_t>{4, 8}));
        }
    }
    return m;
}

QTreeWidgetItem* childNamed(QTreeWidgetItem* parent, const QString& text) {
    for (int c = 0; c < parent->childCount(); ++c)
        if (parent->child(c)->text(ModelTree::ColName) == text) return parent->child(c);
    return nullptr;
}
QTreeWidgetItem* topNamed(QTreeWidget* t, const QString& text) {
    for (int g = 0; g < t->topLevelItemCount(); ++g)
        if (t->topLevelItem(g)->text(ModelTree::ColName) == text) return t->topLevelItem(g);
    return nullptr;
}
}  // namespace

class TestModelTreeExperts : public QObject {
    Q_OBJECT
private slots:
    void indexParsing() {
        QCOMPARE(qz::expertIndexOf("model.layers.3.mlp.experts.17.up_proj.weight"), 17);
        QCOMPARE(qz::expertIndexOf("model.layers.3.block_sparse_moe.experts.0.w1.weight"), 0);
        QCOMPARE(qz::expertIndexOf("blk.3.ffn_up_exps.weight"), -1);
        QCOMPARE(qz::expertIndexOf("model.layers.3.mlp.shared_expert.up_proj.weight"), -1);
        QCOMPARE(qz::layerIndexOf("model.layers.12.mlp.up_proj.weight"), 12);
        // An index too large for an int is not a layer (names are untrusted text; std::stoi threw here).
        QCOMPARE(qz::layerIndexOf("model.layers.99999999999999999999.mlp.up_proj.weight"), -1);
        QCOMPARE(qz::expertIndexOf("model.layers.1.mlp.experts.99999999999999999999.w1.weight"), -1);
    }

    void groupsByExpert() {
        ModelTree tree;
        tree.setModel(moeModel());
        QCOMPARE(tree.tensorCount(), 1 + 2 * (2 + 9));
        QCOMPARE(tree.topLevelItemCount(), 3);  // outside layers, layer 0, layer 1
        for (int l = 0; l < 2; ++l) {
            QTreeWidgetItem* layer = topNamed(&tree, QStringLiteral("Layer %1").arg(l));
            QVERIFY(layer);
            QCOMPARE(layer->childCount(), 3);  // q_proj, router, Experts (3)
            QCOMPARE(ModelTree::tensorCountUnder(layer), 11);
            QTreeWidgetItem* experts = childNamed(layer, QStringLiteral("Experts (3)"));
            QVERIFY(experts);
            QCOMPARE(experts->childCount(), 3);
            QCOMPARE(ModelTree::tensorCountUnder(experts), 9);
            // Parameters of the experts group: 3 experts × (2·4·8 + 8·4) = 288.
            QCOMPARE(experts->data(ModelTree::ColParams, Qt::UserRole).toDouble(), 288.0);
            // Layer: 64 (q) + 24 (router) + 288.
            QCOMPARE(layer->data(ModelTree::ColParams, Qt::UserRole).toDouble(), 376.0);
            for (int e = 0; e < 3; ++e) {
                QTreeWidgetItem* ex = childNamed(experts, QStringLiteral("Expert %1").arg(e));
                QVERIFY(ex);
                QCOMPARE(ex->childCount(), 3);
                QCOMPARE(ex->data(ModelTree::ColBytes, Qt::UserRole).toDouble(), 96.0 * 4);
            }
            // The router is the layer's own tensor, not an expert's.
            QVERIFY(!childNamed(experts, QStringLiteral("Expert -1")));
        }
    }

    void selectingAGroupSelectsItsTensors() {
        ModelTree tree;
        tree.setModel(moeModel());
        QTreeWidgetItem* layer1 = topNamed(&tree, QStringLiteral("Layer 1"));
        QTreeWidgetItem* expert2 = childNamed(childNamed(layer1, QStringLiteral("Experts (3)")),
                                              QStringLiteral("Expert 2"));
        QVERIFY(expert2);
        expert2->setSelected(true);
        const QStringList names = tree.selectedTensorNames();
        QCOMPARE(names, (QStringList{QStringLiteral("model.layers.1.block_sparse_moe.experts.2.w1.weight"),
                                     QStringLiteral("model.layers.1.block_sparse_moe.experts.2.w3.weight"),
                                     QStringLiteral("model.layers.1.block_sparse_moe.experts.2.w2.weight")}));
        tree.clearSelection();
        layer1->setSelected(true);
        QCOMPARE(tree.selectedTensorNames().size(), 11);
    }

    void findingATensorOpensItsGroups() {
        ModelTree tree;
        tree.setModel(moeModel());
        const QString name = QStringLiteral("model.layers.0.mlp.experts.1.down_proj.weight");
        QTreeWidgetItem* item = tree.itemForTensor(name);
        QVERIFY(item);
        QCOMPARE(item->text(ModelTree::ColName), name);
        QCOMPARE(item->parent()->text(ModelTree::ColName), QStringLiteral("Expert 1"));
        tree.setCurrentTensor(name);
        QVERIFY(item->parent()->isExpanded());
        QVERIFY(item->parent()->parent()->isExpanded());
        QVERIFY(item->parent()->parent()->parent()->isExpanded());
        tree.selectTensors({name});
        QCOMPARE(tree.selectedTensorNames(), QStringList{name});
    }
};

QTEST_MAIN(TestModelTreeExperts)
#include "test_model_tree_experts.moc"
