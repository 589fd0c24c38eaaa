// parallelFor: every index is covered exactly once whatever the thread count, and an exception thrown in a
// worker's chunk or in the caller's own chunk reaches the caller after every chunk has finished (before,
// a worker's exception terminated the program, and one from the caller's chunk left threads unjoined).
#include <QtTest>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "common/parallel.h"

class TestParallel : public QObject {
    Q_OBJECT
  private slots:
    void coversEveryIndexOnce() {
        for (int threads : {1, 2, 3, 7}) {
            std::vector<std::atomic<int>> hits(1000);
            qz::parallelFor(hits.size(), [&](size_t b, size_t e, int) {
                for (size_t i = b; i < e; ++i) hits[i]++;
            }, threads);
            for (const auto& h : hits) QCOMPARE(h.load(), 1);
        }
    }

    void workerExceptionReachesTheCaller() {
        // 4 chunks of 25: index 99 lies in the last chunk, which a worker thread runs.
        std::atomic<size_t> done{0};
        bool caught = false;
        try {
            qz::parallelFor(100, [&](size_t b, size_t e, int) {
                for (size_t i = b; i < e; ++i) {
                    if (i == 99) throw std::runtime_error("worker failed");
                    done++;
                }
            }, 4);
        } catch (const std::runtime_error& e) {
            caught = QByteArray(e.what()) == "worker failed";
        }
        QVERIFY(caught);
        QCOMPARE(done.load(), size_t(99)); // the other chunks ran to their end before the rethrow
    }

    void callerChunkExceptionJoinsTheWorkers() {
        std::atomic<size_t> done{0};
        bool caught = false;
        try {
            qz::parallelFor(100, [&](size_t b, size_t e, int c) {
                if (c == 0) throw std::bad_alloc();
                for (size_t i = b; i < e; ++i) done++;
            }, 4);
        } catch (const std::bad_alloc&) {
            caught = true;
        }
        QVERIFY(caught);
        QCOMPARE(done.load(), size_t(75));
    }
};

QTEST_MAIN(TestParallel)
#include "test_parallel.moc"
