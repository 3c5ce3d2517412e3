// Prints the run's closing line in the plain form CI readers recognise ("tests: N passed, N failed"),
// after jest's own summary (both on stderr), so a CI log states how many tests ran. With
// GOVERNOR_TEST_SUMMARY set, the line is also written to that file (.ci/run prints it last).
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const line = `tests: ${results.numPassedTests} passed, ${results.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`;
    process.stderr.write(`${line}\n`);
    if (process.env.GOVERNOR_TEST_SUMMARY)
      require('node:fs').writeFileSync(process.env.GOVERNOR_TEST_SUMMARY, `${line}\n`);
  }
}
module.exports = SummaryReporter;
