// Help › About QuantZoo: the version, QuantZoo's licence, the libraries the programs are built on with their
// licences, and the licences of the data installed with them (the demo model and the sample text).
#pragma once

#include <QDialog>

namespace qz::ui {

class AboutDialog : public QDialog {
    Q_OBJECT
  public:
    explicit AboutDialog(QWidget* parent = nullptr);

    // The dialog's text (rich text), also for tests.
    static QString text();
};

} // namespace qz::ui
