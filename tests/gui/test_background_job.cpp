// The one background runner: results arrive after isRunning() turned false and before finished(),
// exceptions (bad_alloc included) become failed(), progress is throttled and carries an ETA, cancel is
// immediate and drops the job's late posts, a job cancelled before it started never runs, and the
// progress hook sees every report.
#include <QElapsedTimer>
#include <QSignalSpy>
#include <QTest>
#include <QThread>
#include <atomic>
#include <new>
#include <stdexcept>

#include "background_job.h"

using namespace qz::ui;

class TestBackgroundJob : public QObject {
    Q_OBJECT
private slots:
    void resultThenFinished() {
        BackgroundJob job;
        QSignalSpy finished(&job, &BackgroundJob::finished);
        QStringList order;
        bool runningAtResult = true;
        QVERIFY(job.run<int>([](const BackgroundJob::Context& ctx) -> qz::Result<int> {
            ctx.post([] {});
            return 42;
        }, [&](int&& v) {
            runningAtResult = job.isRunning();
            order << QString::number(v);
        }));
        connect(&job, &BackgroundJob::finished, this, [&] { order << QStringLiteral("finished"); });
        QVERIFY(job.isRunning());
        QVERIFY(!job.start([](const BackgroundJob::Context&) { return qz::okStatus(); }));  // one at a time
        QVERIFY(finished.wait(10000));
        QCOMPARE(order, (QStringList{QStringLiteral("42"), QStringLiteral("finished")}));
        QVERIFY(!runningAtResult);
        QVERIFY(!job.isRunning());
    }

    void errorsAndExceptions() {
        BackgroundJob job;
        QSignalSpy failed(&job, &BackgroundJob::failed);
        QSignalSpy finished(&job, &BackgroundJob::finished);
        using Ctx = BackgroundJob::Context;
        QVERIFY(job.start([](const Ctx&) -> qz::Status { return qz::makeError("bad file x.gguf"); }));
        QVERIFY(failed.wait(10000));
        QCOMPARE(failed.last().first().toString(), QStringLiteral("bad file x.gguf"));
        QVERIFY(job.start([](const Ctx&) -> qz::Status { throw std::runtime_error("boom"); }));
        QVERIFY(failed.wait(10000));
        QVERIFY(failed.last().first().toString().contains(QStringLiteral("boom")));
        QVERIFY(job.start([](const Ctx&) -> qz::Status { throw std::bad_alloc(); }));
        QVERIFY(failed.wait(10000));
        QVERIFY(failed.last().first().toString().contains(QStringLiteral("memory")));
        QCOMPARE(finished.count(), 0);
        QVERIFY(!job.isRunning());
    }

    void progressThrottledWithEta() {
        BackgroundJob job;
        std::atomic<int> hooked{0};
        job.setProgressHook([&](const qz::ProgressInfo&) { ++hooked; });
        QSignalSpy progress(&job, &BackgroundJob::progress);
        QSignalSpy finished(&job, &BackgroundJob::finished);
        QElapsedTimer clock;
        clock.start();
        QVERIFY(job.start([](const BackgroundJob::Context& ctx) -> qz::Status {
            for (int i = 0; i <= 100; ++i) {  // 101 reports over ~1 s
                if (!ctx.progress({i / 100.0, "step"})) return qz::cancelledError();
                QThread::msleep(10);
            }
            return qz::okStatus();
        }));
        QVERIFY(finished.wait(20000));
        QCOMPARE(hooked.load(), 101);                       // the hook sees every report
        // The UI gets at most one per 50 ms (plus the first and the last).
        QVERIFY(progress.count() >= 3 && progress.count() <= clock.elapsed() / 50 + 2);
        QCOMPARE(progress.last().at(0).toDouble(), 1.0);   // the last (100 %) always goes through
        QCOMPARE(progress.first().at(2).toDouble(), -1.0); // no ETA at the start
        QVERIFY(progress.last().at(2).toDouble() >= 0.0);  // an ETA once under way
    }

    void cancelIsImmediateAndDropsLatePosts() {
        BackgroundJob job;
        std::atomic<bool> go{false};
        std::atomic<int> reportsAfterCancel{0};
        QSignalSpy cancelled(&job, &BackgroundJob::cancelled);
        QSignalSpy finished(&job, &BackgroundJob::finished);
        std::atomic<bool> entered{false};
        int posted = 0;
        QVERIFY(job.start([&](const BackgroundJob::Context& ctx) -> qz::Status {
            entered = true;
            while (!go.load()) QThread::msleep(5);
            ctx.post([&] { ++posted; });  // after the cancel: dropped
            for (int i = 0; i < 1000; ++i) {
                ++reportsAfterCancel;
                if (!ctx.progress({i / 1000.0, "x"})) return qz::cancelledError();
            }
            return qz::okStatus();
        }));
        QTRY_VERIFY_WITH_TIMEOUT(entered.load(), 10000);  // the work is under way
        job.cancel();
        QCOMPARE(cancelled.count(), 1);  // at once, no event loop round trip
        QVERIFY(!job.isRunning());
        go = true;
        job.waitForIdle();
        QTest::qWait(100);
        QCOMPARE(reportsAfterCancel.load(), 1);  // stopped at its first report
        QCOMPARE(posted, 0);
        QCOMPARE(cancelled.count(), 1);
        QCOMPARE(finished.count(), 0);

        // A job cancelled before the pool started it never runs.
        std::atomic<bool> release{false}, secondRan{false};
        QVERIFY(job.start([&](const BackgroundJob::Context&) -> qz::Status {
            while (!release.load()) QThread::msleep(5);
            return qz::okStatus();
        }));
        job.cancel();
        QVERIFY(job.start([&](const BackgroundJob::Context&) -> qz::Status {
            secondRan = true;
            return qz::okStatus();
        }));
        job.cancel();
        release = true;
        job.waitForIdle();
        QVERIFY(!secondRan.load());
    }

    void finishedAfterCancel() {
        BackgroundJob job;
        std::atomic<bool> go{false}, entered{false};
        QSignalSpy late(&job, &BackgroundJob::finishedAfterCancel);
        QVERIFY(job.start([&](const BackgroundJob::Context&) -> qz::Status {
            entered = true;
            while (!go.load()) QThread::msleep(5);
            return qz::okStatus();  // past its last cancel point: it completes anyway
        }));
        QTRY_VERIFY_WITH_TIMEOUT(entered.load(), 10000);
        job.cancel();
        go = true;
        QVERIFY(late.wait(10000));
    }
};

QTEST_MAIN(TestBackgroundJob)
#include "test_background_job.moc"
