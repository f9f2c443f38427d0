using Microsoft.Extensions.Configuration;

namespace EdgeNode.Daemon.Systemd;

/// <summary>
/// TEST-ONLY fault injection, so that tests can prove the systemd watchdog notices a hung loop.
/// Inert unless the environment variable <c>EDGENODE_TEST_HOOKS=1</c> is set; then the configuration key
/// <c>Testing:HangExecutor=true</c> makes the executor block forever inside the first decode step of the
/// first job it runs (as a hung GPU/CPU kernel would). Never set either in production: the node stops
/// serving and, under systemd with <c>WatchdogSec</c>, is restarted by the watchdog.
/// </summary>
internal sealed class TestHooks
{
    /// <summary>The environment variable that enables the hooks; its value must be exactly <c>1</c>.</summary>
    public const string EnableVariable = "EDGENODE_TEST_HOOKS";

    /// <summary>Hooks that do nothing.</summary>
    public static readonly TestHooks None = new(hangExecutor: false, decodeStepDelay: TimeSpan.Zero);

    private TestHooks(bool hangExecutor, TimeSpan decodeStepDelay)
    {
        HangExecutor = hangExecutor;
        DecodeStepDelay = decodeStepDelay;
    }

    /// <summary><c>Testing:DecodeStepDelayMs</c>: a pause after each decoded token, so that a test can act on a job
    /// that is surely still running (the tiny model decodes 1,000 tokens in a fraction of a second).</summary>
    public TimeSpan DecodeStepDelay { get; }

    /// <summary>True when the executor must hang in its first decode step.</summary>
    public bool HangExecutor { get; }

    /// <summary>Reads <c>Testing:HangExecutor</c>, only when <c>EDGENODE_TEST_HOOKS=1</c>.</summary>
    public static TestHooks FromConfiguration(IConfiguration configuration) =>
        Environment.GetEnvironmentVariable(EnableVariable) == "1"
            ? new TestHooks(configuration.GetValue<bool>("Testing:HangExecutor"), TimeSpan.FromMilliseconds(configuration.GetValue<int>("Testing:DecodeStepDelayMs")))
            : None;

    /// <summary>Called by the executor after each decoded token; blocks forever when <see cref="HangExecutor"/> is set.</summary>
    public void OnDecodeStep()
    {
        if (HangExecutor)
        {
            Thread.Sleep(Timeout.Infinite);
        }

        if (DecodeStepDelay > TimeSpan.Zero)
        {
            Thread.Sleep(DecodeStepDelay);
        }
    }
}
