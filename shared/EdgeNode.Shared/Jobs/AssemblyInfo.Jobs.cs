using System.Diagnostics.CodeAnalysis;

// "Shared" is a Visual Basic keyword; the namespace follows the project name fixed in DESIGN.md §1 and is
// consumed from C# only.
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords",
    Justification = "Namespace follows the project name EdgeNode.Shared (DESIGN.md §1); C# consumers only.",
    Scope = "namespace", Target = "~N:EdgeNode.Shared.Jobs")]
