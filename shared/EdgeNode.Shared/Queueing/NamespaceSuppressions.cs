using System.Diagnostics.CodeAnalysis;

// The project's namespaces are fixed by the design (EdgeNode.Shared.*); "Shared" is a Visual Basic
// keyword, which matters only to VB consumers, and EdgeNode has none.
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords",
    Scope = "namespace", Target = "~N:EdgeNode.Shared.Queueing",
    Justification = "Namespace fixed by DESIGN.md; no Visual Basic consumers.")]
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords",
    Scope = "namespace", Target = "~N:EdgeNode.Shared.Offload",
    Justification = "Namespace fixed by DESIGN.md; no Visual Basic consumers.")]
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords",
    Scope = "namespace", Target = "~N:EdgeNode.Shared.Configuration",
    Justification = "Namespace fixed by DESIGN.md; no Visual Basic consumers.")]
