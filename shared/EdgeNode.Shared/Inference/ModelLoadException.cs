namespace EdgeNode.Shared.Inference;

/// <summary>
/// Thrown by <see cref="Gpt2Model.Load"/> when a model file is missing, is not an ONNX model, or
/// does not have the GPT-2 signature of DESIGN.md §2. The message names every problem found
/// (e.g. "model input 'position_ids' is missing"); <see cref="Problems"/> lists them one by one.
/// </summary>
/// <remarks>
/// A model that cannot be loaded is a configuration error the daemon reports at start, which is
/// why this is an exception and not a value.
/// </remarks>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException()
        : this("the model could not be loaded")
    {
    }

    public ModelLoadException(string message)
        : this(message, innerException: null)
    {
    }

    public ModelLoadException(string message, Exception? innerException)
        : base(message, innerException) => Problems = [message];

    internal ModelLoadException(string path, IReadOnlyList<string> problems)
        : base($"model file '{path}' does not have the GPT-2 signature (DESIGN.md §2): {string.Join("; ", problems)}") =>
        Problems = problems;

    /// <summary>The individual problems, each naming the input, output or file at fault.</summary>
    public IReadOnlyList<string> Problems { get; }
}
