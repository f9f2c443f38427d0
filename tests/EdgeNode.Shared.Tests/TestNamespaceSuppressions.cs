using System.Diagnostics.CodeAnalysis;

// Test namespaces mirror EdgeNode.Shared; "Shared" is a Visual Basic keyword only and tests have no VB consumers.
[assembly: SuppressMessage(
    "Naming",
    "CA1716:Identifiers should not match keywords",
    Justification = "Namespaces mirror the EdgeNode.Shared project; no VB consumers.",
    Scope = "namespaceanddescendants",
    Target = "~N:EdgeNode.Shared.Tests")]
