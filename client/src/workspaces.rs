//! Workspaces and skill packs through the SDK. Each call is one request to the leader of
//! the caller's shard (where a user's workspaces and packs live); calls whose retry is
//! harmless are retried across failover (see the crate docs).

use crate::{Client, ClientError, unexpected};
use shoal_protocol::client::{ClientReply, ClientRequest, ConversationSummary};
use shoal_protocol::mcp::{McpServerInfo, McpServerSpec, check_server};
use shoal_protocol::permissions::PermissionPolicy;
use shoal_protocol::workspaces::{SkillPackInfo, SkillPackSpec, WorkspaceInfo, check_name};
use shoal_protocol::{SkillPackId, WireError, WorkspaceId};

/// A request refused before it was sent: the same words the node would answer with.
fn invalid(field: &str, message: String) -> ClientError {
    ClientError::Server(WireError::invalid(field, message))
}

impl Client {
    /// Creates a workspace named `name` (unique among the caller's, without regard to
    /// case). Retried with one request id, so at most one is created.
    pub async fn create_workspace(&self, name: &str) -> Result<WorkspaceInfo, ClientError> {
        check_name("workspace name", name).map_err(|e| invalid("name", e))?;
        let request = ClientRequest::CreateWorkspace {
            name: name.to_owned(),
            request_id: self.request_id(),
        };
        match self.unary("create_workspace", request, true).await? {
            ClientReply::Workspace(info) => Ok(info),
            other => Err(unexpected("Workspace", &other)),
        }
    }

    /// The caller's workspaces in their order; the default one is always there.
    pub async fn list_workspaces(&self) -> Result<Vec<WorkspaceInfo>, ClientError> {
        match self
            .unary("list_workspaces", ClientRequest::ListWorkspaces, true)
            .await?
        {
            ClientReply::Workspaces(list) => Ok(list),
            other => Err(unexpected("Workspaces", &other)),
        }
    }

    /// The MCP servers of one of the caller's workspaces (`None`: the default one), with
    /// the names of their env variables or headers, never the values.
    pub async fn workspace_mcp_servers(
        &self,
        workspace: Option<WorkspaceId>,
    ) -> Result<(WorkspaceId, Vec<McpServerInfo>), ClientError> {
        let request = ClientRequest::ListWorkspaceMcpServers { workspace };
        match self.unary("workspace_mcp_servers", request, true).await? {
            ClientReply::WorkspaceMcpServers { workspace, servers } => Ok((workspace, servers)),
            other => Err(unexpected("WorkspaceMcpServers", &other)),
        }
    }

    /// Adds or replaces (by name) an MCP server of one of the caller's workspaces; its
    /// agents get it from their next start. Env variables and headers are stored sealed
    /// (the node needs `auth.credentials_key_path`). Retried (the same server twice
    /// changes nothing).
    pub async fn set_workspace_mcp_server(
        &self,
        workspace: Option<WorkspaceId>,
        server: McpServerSpec,
    ) -> Result<(WorkspaceId, Vec<McpServerInfo>), ClientError> {
        check_server(&server).map_err(|e| invalid("server", e))?;
        let request = ClientRequest::SetWorkspaceMcpServer { workspace, server };
        match self
            .unary("set_workspace_mcp_server", request, true)
            .await?
        {
            ClientReply::WorkspaceMcpServers { workspace, servers } => Ok((workspace, servers)),
            other => Err(unexpected("WorkspaceMcpServers", &other)),
        }
    }

    /// Removes an MCP server of one of the caller's workspaces. Not retried (a retry of
    /// an applied removal would find nothing to remove).
    pub async fn remove_workspace_mcp_server(
        &self,
        workspace: Option<WorkspaceId>,
        name: &str,
    ) -> Result<(WorkspaceId, Vec<McpServerInfo>), ClientError> {
        let request = ClientRequest::RemoveWorkspaceMcpServer {
            workspace,
            name: name.to_owned(),
        };
        match self
            .unary("remove_workspace_mcp_server", request, false)
            .await?
        {
            ClientReply::WorkspaceMcpServers { workspace, servers } => Ok((workspace, servers)),
            other => Err(unexpected("WorkspaceMcpServers", &other)),
        }
    }

    /// The permission policy of one of the caller's workspaces (`None`: the default
    /// workspace): how its agents' permission requests are answered.
    pub async fn workspace_permissions(
        &self,
        workspace: Option<WorkspaceId>,
    ) -> Result<(WorkspaceId, PermissionPolicy), ClientError> {
        let request = ClientRequest::GetWorkspacePermissions { workspace };
        match self.unary("workspace_permissions", request, true).await? {
            ClientReply::WorkspacePermissions { workspace, policy } => Ok((workspace, policy)),
            other => Err(unexpected("WorkspacePermissions", &other)),
        }
    }

    /// Replaces the permission policy of one of the caller's workspaces (`None`: the
    /// default workspace); it wins over the agents' policies, an empty one leaves them in
    /// force. A rule naming something that is not a tool kind is refused with
    /// `invalid_argument`. Retried (setting the same policy twice changes nothing).
    pub async fn set_workspace_permissions(
        &self,
        workspace: Option<WorkspaceId>,
        policy: PermissionPolicy,
    ) -> Result<(WorkspaceId, PermissionPolicy), ClientError> {
        policy.check().map_err(|e| invalid("policy", e))?;
        let request = ClientRequest::SetWorkspacePermissions { workspace, policy };
        match self
            .unary("set_workspace_permissions", request, true)
            .await?
        {
            ClientReply::WorkspacePermissions { workspace, policy } => Ok((workspace, policy)),
            other => Err(unexpected("WorkspacePermissions", &other)),
        }
    }

    /// Renames one of the caller's workspaces (the default one too).
    pub async fn rename_workspace(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<WorkspaceInfo, ClientError> {
        check_name("workspace name", name).map_err(|e| invalid("name", e))?;
        let request = ClientRequest::RenameWorkspace {
            workspace,
            name: name.to_owned(),
        };
        match self.unary("rename_workspace", request, true).await? {
            ClientReply::Workspace(info) => Ok(info),
            other => Err(unexpected("Workspace", &other)),
        }
    }

    /// Moves one of the caller's workspaces to `position` (0-based; past the end: last)
    /// and returns the new order.
    pub async fn move_workspace(
        &self,
        workspace: WorkspaceId,
        position: u32,
    ) -> Result<Vec<WorkspaceInfo>, ClientError> {
        let request = ClientRequest::MoveWorkspace {
            workspace,
            position,
        };
        match self.unary("move_workspace", request, true).await? {
            ClientReply::Workspaces(list) => Ok(list),
            other => Err(unexpected("Workspaces", &other)),
        }
    }

    /// Deletes a workspace with all its conversations, its files and its credentials;
    /// `confirm_name` must repeat its current name. Returns how many conversations went
    /// with it. Not retried (a retry of a delete that was applied would say "not found").
    pub async fn delete_workspace(
        &self,
        workspace: WorkspaceId,
        confirm_name: &str,
    ) -> Result<u64, ClientError> {
        let request = ClientRequest::DeleteWorkspace {
            workspace,
            confirm_name: confirm_name.to_owned(),
        };
        match self.unary("delete_workspace", request, false).await? {
            ClientReply::WorkspaceDeleted { conversations } => Ok(conversations),
            other => Err(unexpected("WorkspaceDeleted", &other)),
        }
    }

    /// Creates a conversation in one of the caller's workspaces (see
    /// [`Client::create_conversation`] for the default one).
    pub async fn create_conversation_in(
        &self,
        workspace: WorkspaceId,
        title: Option<String>,
        agent: Option<String>,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::CreateConversationIn {
            workspace,
            title,
            agent,
            request_id: self.request_id(),
        };
        match self.unary("create_conversation_in", request, true).await? {
            ClientReply::Created(summary) => Ok(summary),
            other => Err(unexpected("Created", &other)),
        }
    }

    /// Creates a skill pack. The pack is checked here first ([`SkillPackSpec::check`]).
    pub async fn create_skill_pack(
        &self,
        spec: SkillPackSpec,
    ) -> Result<SkillPackInfo, ClientError> {
        spec.check().map_err(|e| invalid("spec", e))?;
        let request = ClientRequest::CreateSkillPack {
            spec,
            request_id: self.request_id(),
        };
        match self.unary("create_skill_pack", request, true).await? {
            ClientReply::SkillPack(info) => Ok(info),
            other => Err(unexpected("SkillPack", &other)),
        }
    }

    /// Replaces a skill pack's content; workspaces it is attached to get the new files.
    pub async fn update_skill_pack(
        &self,
        pack: SkillPackId,
        spec: SkillPackSpec,
    ) -> Result<SkillPackInfo, ClientError> {
        spec.check().map_err(|e| invalid("spec", e))?;
        let request = ClientRequest::UpdateSkillPack { pack, spec };
        match self.unary("update_skill_pack", request, true).await? {
            ClientReply::SkillPack(info) => Ok(info),
            other => Err(unexpected("SkillPack", &other)),
        }
    }

    /// The caller's skill packs, by name.
    pub async fn list_skill_packs(&self) -> Result<Vec<SkillPackInfo>, ClientError> {
        match self
            .unary("list_skill_packs", ClientRequest::ListSkillPacks, true)
            .await?
        {
            ClientReply::SkillPacks(list) => Ok(list),
            other => Err(unexpected("SkillPacks", &other)),
        }
    }

    /// One skill pack with its content.
    pub async fn get_skill_pack(
        &self,
        pack: SkillPackId,
    ) -> Result<(SkillPackInfo, SkillPackSpec), ClientError> {
        let request = ClientRequest::GetSkillPack { pack };
        match self.unary("get_skill_pack", request, true).await? {
            ClientReply::SkillPackContent { info, spec } => Ok((info, spec)),
            other => Err(unexpected("SkillPackContent", &other)),
        }
    }

    /// Deletes a skill pack, detaching it from every workspace; returns how many it was
    /// attached to. Not retried.
    pub async fn delete_skill_pack(&self, pack: SkillPackId) -> Result<u64, ClientError> {
        let request = ClientRequest::DeleteSkillPack { pack };
        match self.unary("delete_skill_pack", request, false).await? {
            ClientReply::SkillPackDeleted { detached } => Ok(detached),
            other => Err(unexpected("SkillPackDeleted", &other)),
        }
    }

    /// Attaches a skill pack to a workspace (`None`: the default one). Its files are
    /// written into the workspace (`AGENTS.md`, `CLAUDE.md`) and its agents' homes
    /// (`~/.claude/skills/<slug>/`). Attaching twice attaches once.
    pub async fn attach_skill_pack(
        &self,
        workspace: Option<WorkspaceId>,
        pack: SkillPackId,
    ) -> Result<WorkspaceInfo, ClientError> {
        let request = ClientRequest::AttachSkillPack { workspace, pack };
        match self.unary("attach_skill_pack", request, true).await? {
            ClientReply::Workspace(info) => Ok(info),
            other => Err(unexpected("Workspace", &other)),
        }
    }

    /// Detaches a skill pack: the files Shoal wrote for it are removed, files a user or
    /// agent changed stay. Not retried.
    pub async fn detach_skill_pack(
        &self,
        workspace: Option<WorkspaceId>,
        pack: SkillPackId,
    ) -> Result<WorkspaceInfo, ClientError> {
        let request = ClientRequest::DetachSkillPack { workspace, pack };
        match self.unary("detach_skill_pack", request, false).await? {
            ClientReply::Workspace(info) => Ok(info),
            other => Err(unexpected("Workspace", &other)),
        }
    }
}
