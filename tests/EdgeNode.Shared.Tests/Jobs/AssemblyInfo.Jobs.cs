using System.Diagnostics.CodeAnalysis;

// "Shared" is a Visual Basic keyword; test namespaces mirror EdgeNode.Shared (DESIGN.md §1).
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords",
    Justification = "Mirrors the EdgeNode.Shared project name; C# only.",
    Scope = "namespace", Target = "~N:EdgeNode.Shared.Tests.Jobs")]
