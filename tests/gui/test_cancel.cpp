// Cancelling a running job: the job is slowed down with the runner's progress hook (a sleep per
// progress report on the worker), cancelled with the Cancel button, and then: nothing of the
// partial run is shown as a result, the window stays usable, and a new job runs to completion.
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTest>
#include <QThread>
#include <atomic>
#include <qcustomplot.h>

#include "background_job.h"
#include "histogram_plot.h"
#include "histograms_tab.h"
#include "main_window.h"
#include "method_panel.h"
#include "result_summary.h"
#include "tensor_table.h"
#include "tensor_table_model.h"

using namespace qz::ui;

class TestCancel : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName(QStringLiteral("QuantZooTest"));
    }

    void cancelThenRunAgain() {
        MainWindow w;
        w.show();
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        w.openPath(QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K"));
        QVERIFY(opened.wait(30000));

        std::atomic<int> reportsAfterCancel{0};
        std::atomic<bool> cancelClicked{false};
        w.runner()->setProgressHook([&](const qz::ProgressInfo&) {
            if (cancelClicked.load()) ++reportsAfterCancel;
            QThread::msleep(60);  // (36 scanned + 36 x 2) reports x 60 ms: a job of several seconds
        });
        QSignalSpy rows(w.tensorTable()->model(), &QAbstractItemModel::rowsInserted);
        QSignalSpy progress(w.runner(), &BackgroundJob::progress);
        QSignalSpy finished(&w, &MainWindow::runFinished);
        QTest::mouseClick(w.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(w.runner()->isRunning());
        QVERIFY(!w.methodPanel()->runButton()->isEnabled());
        QVERIFY(w.methodPanel()->cancelButton()->isEnabled());
        QVERIFY(rows.wait(20000));       // results appear live...
        QVERIFY(rows.count() < 36);      // ...while the job is still far from done
        QVERIFY(progress.count() > 0);
        QVERIFY(w.tensorTable()->model()->rowCount() > 0);

        cancelClicked = true;
        QTest::mouseClick(w.methodPanel()->cancelButton(), Qt::LeftButton);
        // Immediately: not running, nothing partial left on screen as a result.
        QVERIFY(!w.runner()->isRunning());
        QCOMPARE(w.statusText(), QStringLiteral("Cancelled"));
        QCOMPARE(w.tensorTable()->model()->rowCount(), 0);
        QVERIFY(w.tensorTable()->summary()->text().startsWith(QStringLiteral("Cancelled")));
        QCOMPARE(w.histograms()->modelPlot()->customPlot()->graphCount(), 0);
        QCOMPARE(w.histograms()->tensorPlot()->customPlot()->graphCount(), 0);
        QVERIFY(!w.result());
        QVERIFY(!w.exportAction()->isEnabled());
        QVERIFY(w.methodPanel()->runButton()->isEnabled());
        QVERIFY(!w.methodPanel()->cancelButton()->isEnabled());
        // Late signals of the cancelled job are dropped.
        const int rowsAtCancel = rows.count();
        QVERIFY(!finished.wait(1500));
        QCOMPARE(rows.count(), rowsAtCancel);
        QCOMPARE(w.tensorTable()->model()->rowCount(), 0);
        // The worker saw the flag at its next report, without an event loop round trip.
        w.runner()->waitForIdle();
        QVERIFY(reportsAfterCancel.load() <= 2);

        // The window is still usable: a new job (without the slow hook) completes.
        w.runner()->setProgressHook({});
        QTest::mouseClick(w.methodPanel()->runButton(), Qt::LeftButton);
        QVERIFY(finished.wait(60000));
        QCOMPARE(w.tensorTable()->model()->rowCount(), 36);
        QVERIFY(w.result());
        QCOMPARE(w.histograms()->modelPlot()->customPlot()->graphCount(), 2);
        QVERIFY(w.statusText().startsWith(QStringLiteral("Done")));
    }
};

QTEST_MAIN(TestCancel)
#include "test_cancel.moc"
