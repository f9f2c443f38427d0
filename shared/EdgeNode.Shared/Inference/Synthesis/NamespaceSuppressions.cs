using System.Diagnostics.CodeAnalysis;

// The namespace follows the project layout (EdgeNode.Shared); "Shared" is a Visual Basic keyword only, and this
// library has no Visual Basic consumers.
[assembly: SuppressMessage(
    "Naming",
    "CA1716:Identifiers should not match keywords",
    Justification = "Namespace mandated by the project layout; no VB consumers.",
    Scope = "namespace",
    Target = "~N:EdgeNode.Shared.Inference.Synthesis")]
